// "zoo": the built-in models, "zoo:NAME", freshly initialised for the dataset's shape.
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "workers/engine/model_source/model_source.h"
#include "workers/engine/zoo/zoo.h"

namespace qnet::engine {
namespace {

class ZooModelFile final : public OpenedModel {
 public:
  explicit ZooModelFile(std::string name) : name_(std::move(name)) {}
  absl::StatusOr<std::optional<InputNormalization>> RecordedNormalization() override {
    return std::nullopt;  // zoo models train on the dataset's own statistics
  }
  absl::StatusOr<torch::jit::Module> Instantiate(int64_t channels, int64_t num_classes,
                                                 uint64_t seed) override {
    return MakeZooModel(name_, channels, num_classes, seed);
  }

 private:
  std::string name_;
};

bool ClaimsZoo(const std::string& model) { return absl::StartsWith(model, "zoo:"); }

absl::StatusOr<std::unique_ptr<OpenedModel>> OpenZoo(const std::string& model) {
  return std::make_unique<ZooModelFile>(model.substr(4));
}

}  // namespace

QNET_REGISTER(ModelSource, "zoo", ModelSource{&ClaimsZoo, &OpenZoo});

}  // namespace qnet::engine
