// Built-in models, defined in C++ as TorchScript modules (register_parameter / register_module and
// define() of TorchScript source) so that zoo models and user models share one code path, and a
// zoo model's saved archive loads in stock PyTorch.
//
//   absl::StatusOr<torch::jit::Module> m = qnet::engine::MakeZooModel("lenet5", /*in_channels=*/1,
//                                                                     /*num_classes=*/10, /*seed=*/1);
#ifndef QNET_WORKERS_ENGINE_ZOO_H_
#define QNET_WORKERS_ENGINE_ZOO_H_

#include <cstdint>
#include <string>
#include <vector>

#include <torch/script.h>

#include "absl/status/statusor.h"

namespace qnet::engine {

struct ZooEntry {
  std::string name;         // "lenet5"
  std::string description;
  std::string input_shape;  // "1x28x28"
};

const std::vector<ZooEntry>& ZooModels();

// Freshly initialised (Kaiming, seeded) model: "lenet5" (for 1x28x28, also works on 3x32x32) and
// "resnet20" (CIFAR-style, 3 stages x 3 basic blocks, works on 28x28 and 32x32 inputs, any channel
// count). Unknown names give INVALID_ARGUMENT listing the known ones. Models use nn.Conv2d-like
// submodules with `weight` (and `bias`) attributes and BatchNorm submodules with running stats, so
// the model transform treats them exactly like a user's torchvision model.
absl::StatusOr<torch::jit::Module> MakeZooModel(const std::string& name, int64_t in_channels,
                                                int64_t num_classes, uint64_t seed);

}  // namespace qnet::engine

#endif  // QNET_WORKERS_ENGINE_ZOO_H_
