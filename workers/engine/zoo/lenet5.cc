// LeNet-5 with batch norm: conv5x5(6)-bn-relu-maxpool-conv5x5(16)-bn-relu-maxpool-fc120-relu-
// fc84-relu-fc, for 28x28 grey images (MNIST, Fashion-MNIST); also takes 3x32x32.
#include "absl/strings/str_cat.h"
#include "workers/engine/zoo/zoo_builder.h"

namespace qnet::engine {
namespace {

// input_size 0: adaptive average pooling to 5x5 before the classifier, so one model takes 28x28
// and 32x32 inputs (an identity on 28x28); otherwise the classic fixed flatten size for that size.
absl::StatusOr<torch::jit::Module> MakeLeNet5(ZooBuilder& b, const ZooArgs& args) {
  const int64_t input_size = args.input_size;
  int64_t side = 5;
  if (input_size != 0) {
    side = (input_size / 2 - 4) / 2;
    if (input_size < 12) {
      return absl::InvalidArgumentError(
          absl::StrCat("lenet5 needs inputs of at least 12x12, got input_size ", input_size));
    }
  }
  torch::jit::Module m = b.NewModule("LeNet5");
  m.register_module("conv1", b.Conv(args.in_channels, 6, 5, 1, 2));
  m.register_module("bn1", b.BatchNorm(6));
  m.register_module("conv2", b.Conv(6, 16, 5, 1, 0));
  m.register_module("bn2", b.BatchNorm(16));
  m.register_module("fc1", b.Linear(16 * side * side, 120));
  m.register_module("fc2", b.Linear(120, 84));
  m.register_module("fc3", b.Linear(84, args.num_classes));
  m.define(absl::StrCat(R"(
def forward(self, x):
    x = torch.relu(self.bn1.forward(self.conv1.forward(x)))
    x = torch.max_pool2d(x, [2, 2], [2, 2])
    x = torch.relu(self.bn2.forward(self.conv2.forward(x)))
    x = torch.max_pool2d(x, [2, 2], [2, 2])
)",
                        input_size == 0 ? "    x = torch.adaptive_avg_pool2d(x, [5, 5])\n" : "",
                        R"(    x = torch.flatten(x, 1)
    x = torch.relu(self.fc1.forward(x))
    x = torch.relu(self.fc2.forward(x))
    return self.fc3.forward(x)
)"));
  return m;
}

}  // namespace

QNET_REGISTER(ZooModel, "lenet5", ZooModel{&MakeLeNet5});

}  // namespace qnet::engine
