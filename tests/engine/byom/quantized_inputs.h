// What a model's forward graph feeds its conv and linear layers, for tests: for every op that uses
// a layer's weight, the layer and whether the op's input comes straight from an activation
// quantizer call (training or export flavour). Reads the root forward as it is: a transformed
// model's, or a saved artifact's, which the transform inlined before it was saved.
#ifndef QNET_TESTS_ENGINE_BYOM_QUANTIZED_INPUTS_H_
#define QNET_TESTS_ENGINE_BYOM_QUANTIZED_INPUTS_H_

#include <string>
#include <vector>

#include <torch/csrc/jit/ir/ir.h>
#include <torch/script.h>

#include "workers/engine/transform/model_graph.h"

namespace qnet::testing {

struct LayerInput {
  std::string layer;
  bool quantized = false;
};

inline std::vector<LayerInput> LayerInputs(const torch::jit::Module& model) {
  std::shared_ptr<torch::jit::Graph> graph = model.get_method("forward").graph();
  std::vector<LayerInput> out;
  for (const engine::WeightUse& use : engine::WeightUses(*graph)) {
    const torch::jit::Node* producer = use.node->input(0)->node();
    bool quantized = false;
    if (producer->kind() == torch::jit::prim::CallMethod) {
      const c10::ClassTypePtr type = producer->input(0)->type()->cast<c10::ClassType>();
      quantized =
          type && type->name() &&
          type->name()->qualifiedName().find("QnetActivationQuantizer") != std::string::npos;
    }
    out.push_back({use.path, quantized});
  }
  return out;
}

}  // namespace qnet::testing

#endif  // QNET_TESTS_ENGINE_BYOM_QUANTIZED_INPUTS_H_
