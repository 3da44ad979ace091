#include "common/job/catalog.h"

#include <algorithm>
#include <initializer_list>

#include "absl/strings/str_join.h"
#include "common/job/job_spec.h"

namespace qnet::job {
namespace {

v1::ExportFormat Format(const char* name, const char* description,
                        std::initializer_list<const char*> kinds) {
  v1::ExportFormat f;
  f.set_name(name);
  f.set_description(description);
  for (const char* kind : kinds) f.add_artifact_kinds(kind);
  return f;
}

v1::Model Zoo(const char* name, const char* description, const char* shape) {
  v1::Model m;
  m.set_name(name);
  m.set_description(description);
  m.set_input_shape(shape);
  return m;
}

template <typename T>
const T* FindByName(const std::vector<T>& entries, absl::string_view name) {
  for (const T& e : entries) {
    if (e.name() == name) return &e;
  }
  return nullptr;
}

template <typename T>
std::string JoinNames(const std::vector<T>& entries) {
  return absl::StrJoin(entries, ", ", [](std::string* out, const T& e) { out->append(e.name()); });
}

v1::IntRange Range(IntLimit limit) {
  v1::IntRange r;
  r.set_min(limit.min);
  r.set_max(limit.max);
  return r;
}

}  // namespace

const std::vector<v1::ExportFormat>& ExportFormats() {
  static const auto* const kFormats = new std::vector<v1::ExportFormat>{
      Format("torchscript",
             "TorchScript with hard-quantized weights and activations (torch.jit.load)",
             {"torchscript"}),
      Format("onnx", "ONNX with QuantizeLinear/DequantizeLinear pairs (ONNX Runtime)", {"onnx"}),
      Format("packed", "k-bit packed weight codes with a JSON manifest", {"packed", "manifest"}),
      Format("metrics", "accuracy, size and settings as JSON", {"metrics"}),
  };
  return *kFormats;
}

const v1::ExportFormat* FindExportFormat(absl::string_view name) {
  return FindByName(ExportFormats(), name);
}

std::string ExportFormatNames() { return JoinNames(ExportFormats()); }

const std::vector<v1::Model>& ZooModels() {
  static const auto* const kModels = new std::vector<v1::Model>{
      Zoo("zoo:lenet5",
          "LeNet-5 (with batch norm) for 28x28 grey images (MNIST, Fashion-MNIST), 10 classes",
          "1x28x28"),
      Zoo("zoo:resnet20", "CIFAR-style ResNet-20 for 32x32 colour images, 10 classes", "3x32x32"),
  };
  return *kModels;
}

const v1::Model* FindZooModel(absl::string_view name) { return FindByName(ZooModels(), name); }

std::string ZooModelNames() { return JoinNames(ZooModels()); }

v1::Capabilities Capabilities(const std::vector<std::string>& dataset_formats,
                              const JobLimits& limits) {
  v1::Capabilities c;
  for (const v1::ExportFormat& f : ExportFormats()) *c.add_export_formats() = f;
  for (const std::string& f : dataset_formats) c.add_dataset_formats(f);
  c.add_model_sources("zoo");
  c.add_model_sources("sha256");
  *c.mutable_weight_bits() = Range(kWeightBits);
  *c.mutable_activation_bits() = Range(kActivationBits);
  *c.mutable_epochs() = Range({kEpochs.min, std::min(kEpochs.max, limits.max_epochs)});
  *c.mutable_pretrain_epochs() =
      Range({kPretrainEpochs.min, std::min(kPretrainEpochs.max, limits.max_epochs)});
  *c.mutable_batch_size() =
      Range({kBatchSize.min, std::min(kBatchSize.max, limits.max_batch_size)});
  return c;
}

}  // namespace qnet::job
