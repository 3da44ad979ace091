// "torchscript": a model file saved by torch.jit.save (scripted or traced), trained as loaded.
#include <exception>
#include <filesystem>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "workers/engine/model_source/model_source.h"
#include "workers/engine/torch_error.h"

namespace qnet::engine {
namespace {

class TorchScriptFile final : public OpenedModel {
 public:
  TorchScriptFile(std::string path, torch::jit::Module module)
      : path_(std::move(path)), module_(std::move(module)) {}
  absl::StatusOr<std::optional<InputNormalization>> RecordedNormalization() override {
    absl::StatusOr<std::optional<InputNormalization>> recorded =
        RecordedInputNormalization(module_);
    if (!recorded.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("model file ", path_, ": ", recorded.status().message()));
    }
    return recorded;
  }
  absl::StatusOr<torch::jit::Module> Instantiate(int64_t, int64_t, uint64_t) override {
    return module_;
  }

 private:
  std::string path_;
  torch::jit::Module module_;
};

// Every file: the format a job names a file in until other file formats register.
bool ClaimsFile(const std::string& model) { return !absl::StartsWith(model, "zoo:"); }

absl::StatusOr<std::unique_ptr<OpenedModel>> OpenTorchScript(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) {
    return absl::InvalidArgumentError(
        absl::StrCat("model file ", path, " does not exist (or is not a file)"));
  }
  try {
    return std::make_unique<TorchScriptFile>(path, torch::jit::load(path, torch::kCPU));
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(
        "model file ", path, " is not a loadable TorchScript archive: ", TorchErrorText(e)));
  }
}

}  // namespace

QNET_REGISTER(ModelSource, "torchscript", ModelSource{&ClaimsFile, &OpenTorchScript});

}  // namespace qnet::engine
