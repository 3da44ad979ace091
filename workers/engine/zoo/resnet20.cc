// CIFAR-style ResNet-20: 16-32-64 channels, 3 stages x 3 basic blocks with batch norm, global
// average pool, fc; any channel count, 28x28 or 32x32 inputs.
#include <string>

#include "absl/strings/str_cat.h"
#include "workers/engine/zoo/zoo_builder.h"

namespace qnet::engine {
namespace {

// conv3x3-bn-relu-conv3x3-bn plus the shortcut, then ReLU; a projection (1x1 conv + bn) shortcut
// where the shape changes.
torch::jit::Module MakeBasicBlock(ZooBuilder& b, int64_t in, int64_t out, int64_t stride) {
  torch::jit::Module m = b.NewModule("BasicBlock");
  m.register_module("conv1", b.Conv(in, out, 3, stride, 1));
  m.register_module("bn1", b.BatchNorm(out));
  m.register_module("conv2", b.Conv(out, out, 3, 1, 1));
  m.register_module("bn2", b.BatchNorm(out));
  const bool project = stride != 1 || in != out;
  if (project) {
    m.register_module("shortcut_conv", b.Conv(in, out, 1, stride, 0));
    m.register_module("shortcut_bn", b.BatchNorm(out));
  }
  m.define(absl::StrCat(
      R"(
def forward(self, x):
    out = torch.relu(self.bn1.forward(self.conv1.forward(x)))
    out = self.bn2.forward(self.conv2.forward(out))
)",
      project ? "    out = out + self.shortcut_bn.forward(self.shortcut_conv.forward(x))\n"
              : "    out = out + x\n",
      "    return torch.relu(out)\n"));
  return m;
}

absl::StatusOr<torch::jit::Module> MakeResNet20(ZooBuilder& b, const ZooArgs& args) {
  constexpr int64_t kBlocksPerStage = 3;
  torch::jit::Module m = b.NewModule("ResNet20");
  m.register_module("conv1", b.Conv(args.in_channels, 16, 3, 1, 1));
  m.register_module("bn1", b.BatchNorm(16));
  int64_t channels = 16;
  for (int stage = 1; stage <= 3; ++stage) {
    const int64_t out = 16 << (stage - 1);
    torch::jit::Module layer = b.NewModule("ResNetStage");
    std::string forward = "\ndef forward(self, x):\n";
    for (int i = 0; i < kBlocksPerStage; ++i) {
      const int64_t stride = (stage > 1 && i == 0) ? 2 : 1;
      layer.register_module(absl::StrCat("block", i), MakeBasicBlock(b, channels, out, stride));
      channels = out;
      absl::StrAppend(&forward, "    x = self.block", i, ".forward(x)\n");
    }
    absl::StrAppend(&forward, "    return x\n");
    layer.define(forward);
    m.register_module(absl::StrCat("layer", stage), layer);
  }
  m.register_module("fc", b.Linear(channels, args.num_classes));
  m.define(R"(
def forward(self, x):
    x = torch.relu(self.bn1.forward(self.conv1.forward(x)))
    x = self.layer1.forward(x)
    x = self.layer2.forward(x)
    x = self.layer3.forward(x)
    x = torch.mean(x, [2, 3])
    return self.fc.forward(x)
)");
  return m;
}

}  // namespace

QNET_REGISTER(ZooModel, "resnet20", ZooModel{&MakeResNet20});

}  // namespace qnet::engine
