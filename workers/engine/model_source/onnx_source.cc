// "onnx": an ONNX model file (any framework's export, opset 13 and later), imported as a trainable
// TorchScript module (onnx/importer.h). Claimed by content, whatever the file's name: a file
// that starts like a serialized ModelProto.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/job/job_spec.h"
#include "workers/engine/model_source/model_source.h"
#include "workers/engine/model_source/onnx/importer.h"
#include "workers/engine/model_source/onnx/onnx_file.h"

namespace qnet::engine {
namespace {

// The graph's image input (its one input that is no initializer, as the importer requires) and
// its output.
IoNames GraphIoNames(const qnet_onnx::GraphProto& g) {
  IoNames names{.input = "", .output = g.output(0).name()};
  std::set<std::string> initializers;
  for (const auto& init : g.initializer()) initializers.insert(init.name());
  for (const auto& in : g.input()) {
    if (initializers.count(in.name()) == 0) names.input = in.name();
  }
  return names;
}

class OnnxModelFile final : public OpenedModel {
 public:
  OnnxModelFile(onnx_import::ImportedModel model, IoNames names)
      : model_(std::move(model)), names_(std::move(names)) {}
  absl::StatusOr<std::optional<InputNormalization>> RecordedNormalization() override {
    return std::nullopt;  // an ONNX graph records none
  }
  std::string DeclaredInputShape() override {
    if (!model_.input_shape) return "";
    const std::vector<int64_t>& s = *model_.input_shape;
    return job::FormatInputShape(
        {static_cast<int>(s[0]), static_cast<int>(s[1]), static_cast<int>(s[2])});
  }
  IoNames DeclaredIoNames() override { return names_; }
  std::vector<std::string> RestoredBatchNorms() override { return model_.restored_batch_norms; }
  absl::StatusOr<torch::jit::Module> Instantiate(int64_t, int64_t, uint64_t) override {
    return model_.module;
  }

 private:
  onnx_import::ImportedModel model_;
  IoNames names_;
};

bool ClaimsOnnx(const std::string& model) {
  if (absl::StartsWith(model, "zoo:")) return false;
  std::error_code ec;
  if (!std::filesystem::is_regular_file(model, ec)) return false;
  std::ifstream in(model, std::ios::binary);
  char head[4] = {};
  in.read(head, sizeof(head));
  return onnx_import::LooksLikeOnnx(std::string_view(head, static_cast<size_t>(in.gcount())));
}

absl::StatusOr<std::unique_ptr<OpenedModel>> OpenOnnx(const std::string& path) {
  absl::StatusOr<onnx_import::OnnxFile> file = onnx_import::ReadOnnxFile(path);
  if (!file.ok()) return file.status();
  absl::StatusOr<onnx_import::ImportedModel> model = onnx_import::ImportOnnx(*file);
  if (!model.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("model file ", path, " (ONNX): ", model.status().message()));
  }
  // The engine has no logger of its own: the job's stderr is the worker's log.
  if (const size_t n = model->restored_batch_norms.size(); n > 0) {
    std::fprintf(stderr,
                 "%s: restored %zu batch norms behind convolutions: the graph has no normalisation "
                 "node, as torch.onnx.export leaves it when constant folding merges each "
                 "BatchNormalization into its Conv; they start as the identity and renormalise "
                 "activations while QN trains the weights\n",
                 path.c_str(), n);
  }
  return std::make_unique<OnnxModelFile>(*std::move(model), GraphIoNames(file->model.graph()));
}

}  // namespace

QNET_REGISTER(ModelSource, "onnx", ModelSource{&ClaimsOnnx, &OpenOnnx});

}  // namespace qnet::engine
