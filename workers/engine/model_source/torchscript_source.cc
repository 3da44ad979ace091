// "torchscript": a model file saved by torch.jit.save (scripted or traced), trained as loaded.
#include <exception>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <utility>

#include <caffe2/serialize/inline_container.h>

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

// Why `path` could not be loaded, in terms of what the file is: not a ZIP archive, a damaged one,
// a PyTorch archive without TorchScript code (torch.save), or a TorchScript archive LibTorch
// refused for a reason of its own (`load_error`).
std::string WhyNotLoadable(const std::string& path, const std::string& load_error) {
  constexpr char kHowToSave[] =
      "save the model with torch.jit.save(torch.jit.script(model), path) or "
      "torch.jit.save(torch.jit.trace(model.eval(), example), path)";
  std::ifstream in(path, std::ios::binary);
  char magic[4] = {};
  in.read(magic, sizeof(magic));
  if (in.gcount() != sizeof(magic) ||
      std::string_view(magic, 4) != std::string_view("PK\x03\x04")) {
    return absl::StrCat("is not a TorchScript archive (not a ZIP file) nor an ONNX model; ",
                        kHowToSave, ", or export it with torch.onnx.export");
  }
  try {
    caffe2::serialize::PyTorchStreamReader reader(path);
    bool has_code = false;
    for (const std::string& record : reader.getAllRecords()) {
      has_code = has_code || absl::StartsWith(record, "code/");
    }
    if (!has_code) {
      return absl::StrCat(
          "is a PyTorch archive without TorchScript code (torch.save writes a pickled module or "
          "state dict, which needs the Python class to load); ",
          kHowToSave);
    }
  } catch (const std::exception& e) {
    return absl::StrCat("is a damaged or truncated ZIP archive (", TorchErrorText(e),
                        "); upload the file again");
  }
  return absl::StrCat("is not a loadable TorchScript archive: ", load_error);
}

absl::StatusOr<std::unique_ptr<OpenedModel>> OpenTorchScript(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) {
    return absl::InvalidArgumentError(
        absl::StrCat("model file ", path, " does not exist (or is not a file)"));
  }
  try {
    return std::make_unique<TorchScriptFile>(path, torch::jit::load(path, torch::kCPU));
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat("model file ", path, " ", WhyNotLoadable(path, TorchErrorText(e))));
  }
}

}  // namespace

QNET_REGISTER(ModelSource, "torchscript", ModelSource{&ClaimsFile, &OpenTorchScript});

}  // namespace qnet::engine
