#include "workers/engine/transform/model_graph.h"

#include <functional>
#include <utility>

#include <torch/csrc/jit/ir/constants.h>
#include <torch/csrc/jit/passes/inliner.h>

#include "absl/strings/str_split.h"

namespace qnet::engine {
namespace {

using torch::jit::Graph;
using torch::jit::Node;
using torch::jit::Value;
namespace aten = torch::jit::aten;
namespace prim = torch::jit::prim;

// Visits every node of a block and its nested blocks, in order.
void ForEachNode(torch::jit::Block* block, const std::function<void(Node*)>& f) {
  for (Node* node : block->nodes()) {
    f(node);
    for (torch::jit::Block* inner : node->blocks()) ForEachNode(inner, f);
  }
}

// The prim::GetAttr node that produces `value`, looking through casts, optional unwrapping and
// prim::If outputs (the first branch that yields one); nullptr when there is none.
Node* GetAttrBehind(Value* value) {
  Node* n = value->node();
  if (n->kind() == prim::GetAttr) return n;
  if (n->kind() == prim::unchecked_cast || n->kind() == aten::_unwrap_optional) {
    return GetAttrBehind(n->input(0));
  }
  if (n->kind() == prim::If) {
    for (torch::jit::Block* block : n->blocks()) {
      if (Node* found = GetAttrBehind(block->outputs()[value->offset()])) return found;
    }
  }
  return nullptr;
}

bool HasInlinableCall(Graph& graph) {
  bool found = false;
  ForEachNode(graph.block(), [&](Node* n) {
    found = found || ((n->kind() == prim::CallMethod || n->kind() == prim::CallFunction) &&
                      torch::jit::tryToGraphFunction(n) != nullptr);
  });
  return found;
}

// torch::jit::Inline inlines one level when graph optimisation is off (callees are then inlined
// as written, not pre-inlined): repeat until no call with a graph is left. Each pass removes a
// level of nesting; the bound only guards against a recursive model.
void InlineAll(Graph& graph) {
  for (int depth = 0; depth < 1000 && HasInlinableCall(graph); ++depth) torch::jit::Inline(graph);
}

std::optional<int64_t> ConstantInt(Value* v) {
  std::optional<c10::IValue> iv = torch::jit::toIValue(v);
  if (!iv || !iv->isInt()) return std::nullopt;
  return iv->toInt();
}

}  // namespace

std::shared_ptr<Graph> InlineForward(torch::jit::Module& model) {
  std::shared_ptr<Graph> graph = model.get_method("forward").graph();
  InlineAll(*graph);
  return graph;
}

std::shared_ptr<Graph> InlinedForwardCopy(const torch::jit::Module& model) {
  std::shared_ptr<Graph> graph = model.get_method("forward").graph()->copy();
  InlineAll(*graph);
  return graph;
}

std::optional<std::string> ModulePath(Graph& graph, Value* value) {
  if (value == graph.inputs()[0]) return std::string();
  Node* getter = GetAttrBehind(value);
  if (getter == nullptr) return std::nullopt;
  std::optional<std::string> parent = ModulePath(graph, getter->input(0));
  if (!parent) return std::nullopt;
  const std::string& name = getter->s(torch::jit::attr::name);
  return parent->empty() ? name : *parent + "." + name;
}

std::vector<WeightUse> WeightUses(Graph& graph) {
  std::vector<WeightUse> uses;
  ForEachNode(graph.block(), [&](Node* node) {
    WeightUse use;
    use.node = node;
    std::optional<size_t> groups_input;
    if (node->kind() == aten::conv2d) {
      use.is_conv = true;
      groups_input = 6;
    } else if (node->kind() == aten::_convolution || node->kind() == aten::convolution) {
      // (input, weight, bias, stride, padding, dilation, transposed, output_padding, groups, ...)
      if (node->inputs().size() < 9) return;
      std::optional<c10::IValue> transposed = torch::jit::toIValue(node->input(6));
      if (!transposed || !transposed->isBool() || transposed->toBool()) return;
      use.is_conv = true;
      groups_input = 8;
    } else if (node->kind() != aten::linear) {
      return;
    }
    if (node->inputs().size() < 2) return;
    Node* weight = node->input(1)->node();
    if (weight->kind() != prim::GetAttr || weight->s(torch::jit::attr::name) != "weight") return;
    std::optional<std::string> path = ModulePath(graph, weight->input(0));
    if (!path) return;
    use.path = *std::move(path);
    if (groups_input && *groups_input < node->inputs().size()) {
      use.groups = ConstantInt(node->input(*groups_input)).value_or(1);
    }
    uses.push_back(std::move(use));
  });
  return uses;
}

std::vector<BatchNormUse> BatchNormUses(Graph& graph) {
  std::vector<BatchNormUse> uses;
  ForEachNode(graph.block(), [&](Node* node) {
    if (node->kind() != aten::batch_norm || node->inputs().size() <= kBatchNormMomentumInput) {
      return;
    }
    // (input, weight, bias, running_mean, running_var, training, momentum, eps, cudnn_enabled)
    Node* mean = GetAttrBehind(node->input(3));
    if (mean == nullptr || mean->s(torch::jit::attr::name) != "running_mean") return;
    std::optional<std::string> path = ModulePath(graph, mean->input(0));
    if (path) uses.push_back({node, *std::move(path)});
  });
  return uses;
}

Value* InsertModulePath(Graph& graph, const std::string& path) {
  Value* v = graph.inputs()[0];
  if (path.empty()) return v;
  for (const absl::string_view part : absl::StrSplit(path, '.')) {
    v = graph.insertGetAttr(v, std::string(part));
  }
  return v;
}

}  // namespace qnet::engine
