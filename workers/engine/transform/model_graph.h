// A model's forward pass as one TorchScript graph, so that layers are found by what they do rather
// than by their names or by how the model's code is split into modules: the root `forward` with
// every method and function call inlined. In that graph each parameter a layer uses is a chain of
// prim::GetAttr from the root's `self`, which names the module that owns it ("layer1.0.conv1"),
// whether the model was scripted or traced, its layers nested in containers, shared by several
// branches or used through functional calls (F.conv2d(x, self.proj.weight)).
//
//   std::shared_ptr<torch::jit::Graph> g = InlinedForwardCopy(model);  // the model is unchanged
//   for (const WeightUse& use : WeightUses(*g)) { ... use.path, use.is_conv ... }
#ifndef QNET_WORKERS_ENGINE_TRANSFORM_MODEL_GRAPH_H_
#define QNET_WORKERS_ENGINE_TRANSFORM_MODEL_GRAPH_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <torch/csrc/jit/ir/ir.h>
#include <torch/script.h>

namespace qnet::engine {

// The root forward's own graph with every call inlined, in place (idempotent). Rewrites of the
// model's forward go into this graph; do it before the method first runs (its executor keeps the
// plan it made then).
std::shared_ptr<torch::jit::Graph> InlineForward(torch::jit::Module& model);
// An inlined copy of the root forward's graph, for reading; the model is left as it is.
std::shared_ptr<torch::jit::Graph> InlinedForwardCopy(const torch::jit::Module& model);

// The module path of a module-typed value of `graph` (a GetAttr chain from the root's self, "" for
// self itself), through prim::If outputs and optional unwrapping; nullopt when it is not one.
std::optional<std::string> ModulePath(torch::jit::Graph& graph, torch::jit::Value* value);

// A conv or linear op whose weight is a module's `weight` attribute.
struct WeightUse {
  torch::jit::Node* node = nullptr;
  std::string path;  // the module owning the weight
  bool is_conv = false;
  int64_t groups = 1;  // conv: the groups argument when it is a constant, else 1
};

// The 2-D convolutions (aten::conv2d, aten::_convolution, aten::convolution; not transposed) and
// aten::linear ops of an inlined graph, in the order the forward runs them, whose weight operand
// is a module's `weight` attribute. A module used twice appears twice.
std::vector<WeightUse> WeightUses(torch::jit::Graph& graph);

// A batch-norm op (aten::batch_norm) and the module whose running_mean it uses.
struct BatchNormUse {
  torch::jit::Node* node = nullptr;
  std::string path;
};

// The batch norms with running statistics (track_running_stats) of an inlined graph, in forward
// order.
std::vector<BatchNormUse> BatchNormUses(torch::jit::Graph& graph);

// Inserts, at the graph's insertion point, the GetAttr chain from the root's self to `path`.
torch::jit::Value* InsertModulePath(torch::jit::Graph& graph, const std::string& path);

// aten::batch_norm's operands that the transform replaces.
inline constexpr size_t kBatchNormTrainingInput = 5;
inline constexpr size_t kBatchNormMomentumInput = 6;

}  // namespace qnet::engine

#endif  // QNET_WORKERS_ENGINE_TRANSFORM_MODEL_GRAPH_H_
