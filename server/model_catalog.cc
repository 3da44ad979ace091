#include "server/model_catalog.h"

#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"

namespace qnet::server {
namespace {

qnet::v1::Model MakeModel(const char* name, const char* description, const char* shape) {
  qnet::v1::Model m;
  m.set_name(name);
  m.set_description(description);
  m.set_input_shape(shape);
  return m;
}

}  // namespace

const std::vector<qnet::v1::Model>& ZooModels() {
  static const auto* const kModels = new std::vector<qnet::v1::Model>{
      MakeModel(
          "zoo:lenet5",
          "LeNet-5 (with batch norm) for 28x28 grey images (MNIST, Fashion-MNIST), 10 classes",
          "1x28x28"),
      MakeModel("zoo:resnet20", "CIFAR-style ResNet-20 for 32x32 colour images, 10 classes",
                "3x32x32"),
  };
  return *kModels;
}

const qnet::v1::Model* FindZooModel(absl::string_view name) {
  for (const qnet::v1::Model& m : ZooModels()) {
    if (m.name() == name) return &m;
  }
  return nullptr;
}

std::string ZooModelNames() {
  return absl::StrJoin(ZooModels(), ", ",
                       [](std::string* out, const qnet::v1::Model& m) { out->append(m.name()); });
}

}  // namespace qnet::server
