// Walks a module's TorchScript forward graph in order while running it on two example batches,
// so submodule calls, `self.training` branches, loops and shape arithmetic resolve to concrete
// values. Values that do not depend on the model input become constants; each op on the model
// input goes to the converter registered for its symbol (converter.h), and activation-quantizer
// calls to their pattern (patterns.h).
#ifndef QNET_WORKERS_ENGINE_EXPORT_ONNX_GRAPH_WALKER_H_
#define QNET_WORKERS_ENGINE_EXPORT_ONNX_GRAPH_WALKER_H_

#include <cstdint>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include <torch/csrc/jit/ir/ir.h>
#include <torch/script.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "workers/engine/export/io_names.h"
#include "workers/engine/export/onnx/emitter.h"
#include "workers/engine/export/onnx/value.h"

namespace qnet::engine::onnx {

class GraphWalker {
 public:
  explicit GraphWalker(Emitter& emitter) : e_(emitter) {}

  // Writes `module`'s forward (one [N, C, H, W] float tensor in, `chw` = {C, H, W}) as the graph
  // from names.input to names.output (<output>_1, <output>_2, ... for a tuple), names no other
  // value takes. The module must be a CPU module in eval mode. Errors name the op and where it is
  // in the model.
  absl::Status Walk(const torch::jit::Module& module, const std::vector<int64_t>& chw,
                    const IoNames& names);

 private:
  using Env = std::unordered_map<const torch::jit::Value*, SlotPtr>;
  // One graph being walked: its values, and its method's name for messages ("conv1.forward").
  struct Frame {
    Env env;
    std::string scope;
    int depth = 0;
  };

  absl::StatusOr<std::vector<SlotPtr>> RunGraph(torch::jit::Graph& graph,
                                                const std::vector<SlotPtr>& args,
                                                const std::string& scope, int depth);
  absl::Status RunBlock(torch::jit::Block* block, Frame& f);
  absl::Status RunNode(torch::jit::Node* node, Frame& f);
  // Constants, attributes, calls, control flow and no-ops; nullopt for any other node.
  std::optional<absl::Status> RunControl(torch::jit::Node* node, const std::vector<SlotPtr>& in,
                                         Frame& f);
  absl::Status RunIf(torch::jit::Node* node, const std::vector<SlotPtr>& in, Frame& f);
  absl::Status RunLoop(torch::jit::Node* node, const std::vector<SlotPtr>& in, Frame& f);
  absl::Status RunCall(torch::jit::Node* node, const std::vector<SlotPtr>& in, Frame& f);
  // A node whose inputs are all static: evaluated once, its results are constants.
  absl::Status RunStatic(torch::jit::Node* node, const std::vector<SlotPtr>& in, Frame& f);
  // A node with a dynamic input: containers keep their elements' slots, shape arithmetic is
  // resolved, and tensor ops on the model input are converted.
  absl::Status RunDynamic(torch::jit::Node* node, std::vector<SlotPtr>& in, Frame& f);
  absl::Status Convert(torch::jit::Node* node, const std::vector<SlotPtr>& in,
                       const std::vector<SlotPtr>& out, Frame& f);
  // Runs the node on both example batches (or once, with out_b = out_a, when `once`).
  absl::Status Evaluate(torch::jit::Node* node, const std::vector<SlotPtr>& in, const Frame& f,
                        std::vector<c10::IValue>* out_a, std::vector<c10::IValue>* out_b,
                        bool once = false);

  Emitter& e_;
  int64_t steps_ = 0;
};

}  // namespace qnet::engine::onnx

#endif  // QNET_WORKERS_ENGINE_EXPORT_ONNX_GRAPH_WALKER_H_
