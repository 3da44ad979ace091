// Reading an ONNX model file: the ModelProto parsed and checked before anything is built from it
// (opset, graph inputs and outputs, every node input defined, no cycle), and its tensors as
// LibTorch tensors, external data included. Every failure is an INVALID_ARGUMENT that names what
// is wrong and where; nothing here throws or trusts a size the file states.
//
//   absl::StatusOr<OnnxFile> file = ReadOnnxFile("model.onnx");
//   for (const qnet_onnx::NodeProto* node : file->order) { ... }
#ifndef QNET_WORKERS_ENGINE_MODEL_SOURCE_ONNX_ONNX_FILE_H_
#define QNET_WORKERS_ENGINE_MODEL_SOURCE_ONNX_ONNX_FILE_H_

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include <torch/torch.h>

#include "absl/status/statusor.h"
#include "qnet_onnx.pb.h"

namespace qnet::engine::onnx_import {

// The oldest default-domain opset the importer reads (the op semantics it implements).
inline constexpr int64_t kMinOpset = 13;
// A tensor larger than this (elements) is refused: no classifier needs one, and a crafted file
// must not make the importer allocate what it states.
inline constexpr int64_t kMaxTensorElements = int64_t{1} << 31;

struct OnnxFile {
  qnet_onnx::ModelProto model;
  std::filesystem::path dir;  // external data is read relative to it
  int64_t opset = 0;          // the default domain's
  // The graph's nodes in an order where each runs after the nodes producing its inputs.
  std::vector<const qnet_onnx::NodeProto*> order;
};

// Whether `first_bytes` (a file's first bytes) start like a serialized ModelProto.
bool LooksLikeOnnx(std::string_view first_bytes);

// Parses `bytes` (the content of a file in `dir`) and checks the graph; `what` names it in errors.
absl::StatusOr<OnnxFile> ParseOnnx(std::string_view bytes, const std::filesystem::path& dir,
                                   const std::string& what);
absl::StatusOr<OnnxFile> ReadOnnxFile(const std::string& path);

// A tensor's values (float, double, float16, int8/16/32/64, uint8, bool), from its own fields or
// its external data file (which must lie in `dir`).
absl::StatusOr<torch::Tensor> TensorFromProto(const qnet_onnx::TensorProto& proto,
                                              const std::filesystem::path& dir);

// The node's name for messages: 'name' (OpType), or #index (OpType) when it has none.
std::string NodeLabel(const qnet_onnx::NodeProto& node);

}  // namespace qnet::engine::onnx_import

#endif  // QNET_WORKERS_ENGINE_MODEL_SOURCE_ONNX_ONNX_FILE_H_
