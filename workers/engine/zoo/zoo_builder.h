// The zoo's building blocks and registry. A zoo model is one file that builds the network from
// Builder's layers (TorchScript modules defined in C++, so zoo and user models share one code
// path and a saved zoo model loads in stock PyTorch) and registers it:
//
//   absl::StatusOr<torch::jit::Module> MakeTinyNet(ZooBuilder& b, const ZooArgs& args) {
//     torch::jit::Module m = b.NewModule("TinyNet");
//     m.register_module("fc", b.Linear(args.in_channels * 28 * 28, args.num_classes));
//     m.define("def forward(self, x):\n    return self.fc.forward(torch.flatten(x, 1))\n");
//     return m;
//   }
//   QNET_REGISTER(ZooModel, "tinynet", ZooModel{&MakeTinyNet});
//
// and one catalog entry (common/job/catalog.cc: name, description, input shape) so that qnetd
// offers it; zoo_test fails while either is missing.
#ifndef QNET_WORKERS_ENGINE_ZOO_ZOO_BUILDER_H_
#define QNET_WORKERS_ENGINE_ZOO_ZOO_BUILDER_H_

#include <cstdint>
#include <memory>
#include <string>

#include <torch/script.h>
#include <torch/torch.h>

#include "absl/status/statusor.h"
#include "common/registry.h"

namespace qnet::engine {

// Builds the modules of one model. All classes live in one compilation unit and every module gets
// a class of its own (CompilationUnit name mangling: "__torch__.qnet.Conv2d",
// "__torch__.qnet.___torch_mangle_1.Conv2d", ...), so the model transform can add attributes to
// or redefine one layer's class without touching any other layer. Layers are seeded from `seed`.
class ZooBuilder {
 public:
  explicit ZooBuilder(uint64_t seed);

  // A module of class __torch__.qnet.<class_name> with a bool `training` attribute.
  torch::jit::Module NewModule(const std::string& class_name);
  // Kaiming normal (fan_in, ReLU gain) weights, zero bias. Every conv has a bias so all convs
  // present the same attribute set as a biased torch.nn.Conv2d.
  torch::jit::Module Conv(int64_t in, int64_t out, int64_t kernel, int64_t stride, int64_t padding);
  // He-normal like the convolutions. torch.nn.Linear's default, U(-1/sqrt(in), 1/sqrt(in)),
  // halves the signal's variance at every ReLU layer, and LeNet's three fully connected layers
  // then need several epochs before the loss moves; the zoo's pre-training budget is one or two.
  torch::jit::Module Linear(int64_t in, int64_t out);
  torch::jit::Module BatchNorm(int64_t channels);

 private:
  std::shared_ptr<torch::jit::CompilationUnit> cu_;
  torch::Generator gen_;
};

struct ZooArgs {
  int64_t in_channels = 1;
  int64_t num_classes = 10;
  int64_t input_size = 0;  // see MakeZooModel
};

// A registered zoo model, by name without the "zoo:" prefix.
struct ZooModel {
  absl::StatusOr<torch::jit::Module> (*build)(ZooBuilder& builder, const ZooArgs& args);
};

}  // namespace qnet::engine

#endif  // QNET_WORKERS_ENGINE_ZOO_ZOO_BUILDER_H_
