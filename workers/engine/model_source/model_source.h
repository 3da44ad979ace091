// Model sources: where the model a job names comes from. Each source is one file that registers
// itself (QNET_REGISTER) and says which models it reads; RunJob asks the sources in name order and
// uses the first that claims the job's model. A source opens the model, tells the input
// normalisation it records (if any), and instantiates the module to train once the dataset's
// shape is known.
//
//   absl::StatusOr<std::unique_ptr<OpenedModel>> m = OpenModel("zoo:lenet5");
//   absl::StatusOr<torch::jit::Module> module = (*m)->Instantiate(1, 10, /*seed=*/1);
#ifndef QNET_WORKERS_ENGINE_MODEL_SOURCE_MODEL_SOURCE_H_
#define QNET_WORKERS_ENGINE_MODEL_SOURCE_MODEL_SOURCE_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <torch/script.h>

#include "absl/status/statusor.h"
#include "common/registry.h"
#include "workers/engine/export/export.h"
#include "workers/engine/export/io_names.h"

namespace qnet::engine {

class OpenedModel {
 public:
  virtual ~OpenedModel() = default;
  // The normalisation the model records (a qnet artifact or saved float model does), if any.
  virtual absl::StatusOr<std::optional<InputNormalization>> RecordedNormalization() = 0;
  // The input shape ("3x224x224") the model declares, used when the job gives none; "" when it
  // declares none (a TorchScript module has no declared input).
  virtual std::string DeclaredInputShape() { return ""; }
  // The names its exported graph keeps: an ONNX graph's own, "input" and "output" otherwise.
  virtual IoNames DeclaredIoNames() { return {}; }
  // Batch norms the source added to the model that the job must set from its data before training
  // (InitIdentityBatchNorms, training/evaluation.h): submodule names of the instantiated module.
  virtual std::vector<std::string> RestoredBatchNorms() { return {}; }
  // The module to train for images of `channels` channels and `num_classes` classes.
  virtual absl::StatusOr<torch::jit::Module> Instantiate(int64_t channels, int64_t num_classes,
                                                         uint64_t seed) = 0;
};

struct ModelSource {
  // Whether this source reads `model`: JobSpec.model, or the local file it was resolved to.
  bool (*claims)(const std::string& model);
  // INVALID_ARGUMENT naming the model when it cannot be read. Never throws.
  absl::StatusOr<std::unique_ptr<OpenedModel>> (*open)(const std::string& model);
};

// The model through the first source (in name order) that claims it; INVALID_ARGUMENT when none
// does.
absl::StatusOr<std::unique_ptr<OpenedModel>> OpenModel(const std::string& model);

}  // namespace qnet::engine

#endif  // QNET_WORKERS_ENGINE_MODEL_SOURCE_MODEL_SOURCE_H_
