// Built-in models, defined in C++ as TorchScript modules (register_parameter / register_module and
// define() of TorchScript source) so that zoo models and user models share one code path, and a
// zoo model's saved archive loads in stock PyTorch.
//
//   absl::StatusOr<torch::jit::Module> m =
//       qnet::engine::MakeZooModel("lenet5", /*in_channels=*/1, /*num_classes=*/10, /*seed=*/1);
//   torch::Tensor logits = m->forward({images}).toTensor();  // [N, 10]
#ifndef QNET_WORKERS_ENGINE_ZOO_ZOO_H_
#define QNET_WORKERS_ENGINE_ZOO_ZOO_H_

#include <cstdint>
#include <string>
#include <vector>

#include <torch/script.h>

#include "absl/status/statusor.h"

namespace qnet::engine {

// The registered zoo models' names ("lenet5", "resnet20"), sorted. Each has a file of its own
// (zoo_builder.h says how to add one).
std::vector<std::string> ZooModelNames();

// Freshly initialised (Kaiming, seeded) registered model: "lenet5" (for 1x28x28, also works on
// 3x32x32) and "resnet20" (CIFAR-style, 3 stages x 3 basic blocks, works on 28x28 and 32x32
// inputs, any channel count). Unknown names give INVALID_ARGUMENT listing the known ones. Models
// use nn.Conv2d-like submodules with `weight` (and `bias`) attributes and BatchNorm submodules with
// running stats, so the model transform treats them exactly like a user's torchvision model.
//
// input_size (lenet5 only): 0 (default) puts an adaptive average pool to 5x5 before the classifier
// so one model takes any input of at least 12x12 (an identity on 28x28); a positive value builds
// the classic fixed-size LeNet for input_size x input_size with no adaptive pool (friendlier to
// exporters). in_channels and num_classes must be in [1, 65536]. Never throws.
//
// Structure, for the model transform: every submodule has a class of its own, named
// __torch__.qnet.{Conv2d,Linear,BatchNorm2d,BasicBlock,ResNetStage} (later ones mangled to
// __torch__.qnet.___torch_mangle_N.Conv2d etc.), and a bool `training` attribute. Conv2d: params
// weight [out,in,k,k] and bias [out], int attrs stride, padding. Linear: weight, bias, int
// in_features/out_features. BatchNorm2d: params weight, bias; buffers running_mean, running_var,
// num_batches_tracked; float attrs momentum, eps. Every ReLU is an aten::relu in a forward;
// parents call children as self.conv1.forward(x) (prim::CallMethod in the graph).
absl::StatusOr<torch::jit::Module> MakeZooModel(const std::string& name, int64_t in_channels,
                                                int64_t num_classes, uint64_t seed,
                                                int64_t input_size = 0);

}  // namespace qnet::engine

#endif  // QNET_WORKERS_ENGINE_ZOO_ZOO_H_
