#include "workers/engine/export/onnx/onnx_export.h"

#include <filesystem>
#include <system_error>

#include <torch/torch.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/atomic_file.h"
#include "workers/engine/export/onnx/emitter.h"
#include "workers/engine/export/onnx/graph_walker.h"
#include "workers/engine/torch_error.h"

namespace qnet::engine {

absl::Status ExportOnnx(const torch::jit::Module& hard_model,
                        const std::vector<int64_t>& input_shape, const std::string& path,
                        const std::map<std::string, std::string>& metadata, const IoNames& names) {
  if (input_shape.size() != 3) {
    return absl::InvalidArgumentError(
        absl::StrCat("input shape must be C,H,W; got ", input_shape.size(), " dims"));
  }
  for (int64_t d : input_shape) {
    if (d <= 0 || d > (1 << 16)) {
      return absl::InvalidArgumentError(
          absl::StrCat("bad input shape ", absl::StrJoin(input_shape, "x")));
    }
  }
  if (path.empty()) return absl::InvalidArgumentError("empty ONNX output path");
  if (names.input.empty() || names.output.empty() || names.input == names.output) {
    return absl::InvalidArgumentError(absl::StrCat("the ONNX graph's input and output need two ",
                                                   "different non-empty names; got '", names.input,
                                                   "' and '", names.output, "'"));
  }
  {
    std::error_code ec;
    const std::filesystem::path parent = std::filesystem::path(path).parent_path();
    if (!parent.empty() && !std::filesystem::is_directory(parent, ec)) {
      return absl::NotFoundError(
          absl::StrCat("output directory does not exist: ", parent.string()));
    }
  }
  onnx::pb::ModelProto model;
  onnx::InitModel(&model, metadata);
  try {
    torch::NoGradGuard no_grad;
    // Work on a CPU copy in eval mode: the caller's module is never touched.
    torch::jit::Module module = hard_model.clone();
    module.eval();
    module.to(at::kCPU);
    if (module.find_method("forward") == std::nullopt) {
      return absl::InvalidArgumentError("the model has no forward method");
    }
    onnx::Emitter emitter(model.mutable_graph());
    if (absl::Status s = onnx::GraphWalker(emitter).Walk(module, input_shape, names); !s.ok()) {
      return s;
    }
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("ONNX export failed: ", TorchErrorText(e)));
  }
  if (model.ByteSizeLong() > (size_t{1} << 31) - 1) {
    return onnx::NotSupported("models over protobuf's 2 GiB limit");
  }
  std::string bytes;
  if (!model.SerializeToString(&bytes)) return absl::InternalError("cannot serialize ONNX model");
  return WriteFileAtomically(path, bytes);
}

}  // namespace qnet::engine
