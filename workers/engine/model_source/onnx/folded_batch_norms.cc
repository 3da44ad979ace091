// Which convolutions get a restored batch norm (docs/ARCHITECTURE.md, "ONNX models").
// torch.onnx.export's default constant folding merges every BatchNormalization into the Conv
// before it, and nothing then renormalises activations while QN training changes the weights.
// The graph does not say which convolutions had one, so the rule reads the graph's shape:
//   - only a graph with no normalisation node at all: one that kept any (batch norms the exporter
//     could not fold, layer norms) was exported or designed with the normalisation it has;
//   - every Conv there (grouped and depthwise included: a batch norm is per channel), except
//     - one whose input is a globally pooled vector (a squeeze-and-excitation gate): those never
//       had a batch norm, and batch statistics of one value per image are noise;
//     - one whose output reaches no later layer (a classifier conv): batch statistics of logits
//       would couple the images of a batch, and the last layer stays float anyway.
#include "workers/engine/model_source/onnx/importer.h"

namespace qnet::engine::onnx_import {

std::set<const qnet_onnx::NodeProto*> ConvsWithFoldedBatchNorm(const OnnxFile& file) {
  static const std::set<std::string> kNorms = {"BatchNormalization", "LayerNormalization",
                                               "InstanceNormalization", "GroupNormalization"};
  static const std::set<std::string> kLayers = {"Conv", "ConvTranspose", "Gemm", "MatMul"};
  for (const qnet_onnx::NodeProto* node : file.order) {
    if (kNorms.count(node->op_type()) != 0) return {};
  }
  // Runtime values (the input's descendants) and, among them, the globally pooled ones.
  std::set<std::string> runtime, pooled;
  for (const auto& in : file.model.graph().input()) runtime.insert(in.name());
  for (const auto& init : file.model.graph().initializer()) runtime.erase(init.name());
  for (const qnet_onnx::NodeProto* node : file.order) {
    bool reads_runtime = false, all_pooled = true;
    for (const std::string& in : node->input()) {
      if (runtime.count(in) == 0) continue;
      reads_runtime = true;
      all_pooled = all_pooled && pooled.count(in) != 0;
    }
    if (!reads_runtime) continue;
    const bool global_pool =
        node->op_type() == "GlobalAveragePool" || node->op_type() == "GlobalMaxPool";
    for (const std::string& out : node->output()) {
      runtime.insert(out);
      if (global_pool || all_pooled) pooled.insert(out);
    }
  }
  // Values some later layer reads, through any ops.
  std::set<std::string> feeds_layer;
  for (auto it = file.order.rbegin(); it != file.order.rend(); ++it) {
    const qnet_onnx::NodeProto& node = **it;
    bool feeds = kLayers.count(node.op_type()) != 0;
    for (const std::string& out : node.output()) feeds = feeds || feeds_layer.count(out) != 0;
    if (feeds) feeds_layer.insert(node.input().begin(), node.input().end());
  }
  std::set<const qnet_onnx::NodeProto*> convs;
  for (const qnet_onnx::NodeProto* node : file.order) {
    if (node->op_type() == "Conv" && node->input_size() > 1 && node->output_size() > 0 &&
        pooled.count(node->input(0)) == 0 && feeds_layer.count(node->output(0)) != 0) {
      convs.insert(node);
    }
  }
  return convs;
}

}  // namespace qnet::engine::onnx_import
