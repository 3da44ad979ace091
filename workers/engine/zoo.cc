#include "workers/engine/zoo.h"

#include <cmath>
#include <exception>
#include <memory>
#include <new>
#include <utility>

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace qnet::engine {
namespace {

using torch::jit::Module;

// Layer forwards call aten ops directly (torch.conv2d, torch.linear, torch.batch_norm): these
// resolve without Python and are what a scripted torch.nn layer's graph contains, so the saved
// code loads in stock PyTorch and the transform sees the same ops it sees in user models.
constexpr char kConvForward[] = R"(
def forward(self, x):
    return torch.conv2d(x, self.weight, self.bias, [self.stride, self.stride],
                        [self.padding, self.padding])
)";

constexpr char kLinearForward[] = R"(
def forward(self, x):
    return torch.linear(x, self.weight, self.bias)
)";

constexpr char kBatchNormForward[] = R"(
def forward(self, x):
    return torch.batch_norm(x, self.weight, self.bias, self.running_mean, self.running_var,
                            self.training, self.momentum, self.eps, True)
)";

// Builds the modules of one model. All classes live in one compilation unit and every module gets
// a class of its own (CompilationUnit name mangling: "__torch__.qnet.Conv2d",
// "__torch__.qnet.___torch_mangle_1.Conv2d", ...), so the model transform can add attributes to
// or redefine one layer's class without touching any other layer.
class Builder {
 public:
  explicit Builder(uint64_t seed)
      : cu_(std::make_shared<torch::jit::CompilationUnit>()),
        gen_(at::make_generator<at::CPUGeneratorImpl>(seed)) {}

  Module NewModule(const std::string& class_name) {
    Module m(c10::QualifiedName("__torch__.qnet." + class_name), cu_, /*shouldMangle=*/true);
    // Module::train()/eval() (C++ and Python) set this attribute on every submodule.
    m.register_attribute("training", c10::BoolType::get(), true);
    return m;
  }

  // Kaiming normal (fan_in, ReLU gain) weights, zero bias. Every conv has a bias so all convs
  // present the same attribute set as a biased torch.nn.Conv2d.
  Module Conv(int64_t in, int64_t out, int64_t kernel, int64_t stride, int64_t padding) {
    Module m = NewModule("Conv2d");
    const double std = std::sqrt(2.0 / static_cast<double>(in * kernel * kernel));
    m.register_parameter("weight", Param(torch::randn({out, in, kernel, kernel}, gen_) * std),
                         false);
    m.register_parameter("bias", Param(torch::zeros({out})), false);
    m.register_attribute("stride", c10::IntType::get(), stride);
    m.register_attribute("padding", c10::IntType::get(), padding);
    m.define(kConvForward);
    return m;
  }

  // He-normal like the convolutions. torch.nn.Linear's default, U(-1/sqrt(in), 1/sqrt(in)), halves
  // the signal's variance at every ReLU layer, and LeNet's three fully connected layers then
  // need several epochs before the loss moves; the zoo's pre-training budget is one or two.
  Module Linear(int64_t in, int64_t out) {
    Module m = NewModule("Linear");
    const double std = std::sqrt(2.0 / static_cast<double>(in));
    m.register_parameter("weight", Param(torch::randn({out, in}, gen_) * std), false);
    m.register_parameter("bias", Param(torch::zeros({out})), false);
    m.register_attribute("in_features", c10::IntType::get(), in);
    m.register_attribute("out_features", c10::IntType::get(), out);
    m.define(kLinearForward);
    return m;
  }

  Module BatchNorm(int64_t channels) {
    Module m = NewModule("BatchNorm2d");
    m.register_parameter("weight", Param(torch::ones({channels})), false);
    m.register_parameter("bias", Param(torch::zeros({channels})), false);
    m.register_buffer("running_mean", torch::zeros({channels}));
    m.register_buffer("running_var", torch::ones({channels}));
    m.register_buffer("num_batches_tracked", torch::zeros({}, torch::kLong));
    m.register_attribute("momentum", c10::FloatType::get(), 0.1);
    m.register_attribute("eps", c10::FloatType::get(), 1e-5);
    m.define(kBatchNormForward);
    return m;
  }

 private:
  static torch::Tensor Param(const torch::Tensor& t) {
    return t.detach().contiguous().requires_grad_(true);
  }
  torch::Tensor Uniform(at::IntArrayRef shape, double bound) {
    return torch::rand(shape, gen_) * (2.0 * bound) - bound;
  }

  std::shared_ptr<torch::jit::CompilationUnit> cu_;
  torch::Generator gen_;
};

// input_size 0: adaptive average pooling to 5x5 before the classifier, so one model takes 28x28
// and 32x32 inputs (an identity on 28x28); otherwise the classic fixed flatten size for that size.
absl::StatusOr<Module> MakeLeNet5(Builder& b, int64_t in_channels, int64_t num_classes,
                                  int64_t input_size) {
  int64_t side = 5;
  if (input_size != 0) {
    side = (input_size / 2 - 4) / 2;
    if (input_size < 12) {
      return absl::InvalidArgumentError(
          absl::StrCat("lenet5 needs inputs of at least 12x12, got input_size ", input_size));
    }
  }
  Module m = b.NewModule("LeNet5");
  m.register_module("conv1", b.Conv(in_channels, 6, 5, 1, 2));
  m.register_module("bn1", b.BatchNorm(6));
  m.register_module("conv2", b.Conv(6, 16, 5, 1, 0));
  m.register_module("bn2", b.BatchNorm(16));
  m.register_module("fc1", b.Linear(16 * side * side, 120));
  m.register_module("fc2", b.Linear(120, 84));
  m.register_module("fc3", b.Linear(84, num_classes));
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

// conv3x3-bn-relu-conv3x3-bn plus the shortcut, then ReLU; a projection (1x1 conv + bn) shortcut
// where the shape changes.
Module MakeBasicBlock(Builder& b, int64_t in, int64_t out, int64_t stride) {
  Module m = b.NewModule("BasicBlock");
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

Module MakeResNet20(Builder& b, int64_t in_channels, int64_t num_classes) {
  constexpr int64_t kBlocksPerStage = 3;
  Module m = b.NewModule("ResNet20");
  m.register_module("conv1", b.Conv(in_channels, 16, 3, 1, 1));
  m.register_module("bn1", b.BatchNorm(16));
  int64_t channels = 16;
  for (int stage = 1; stage <= 3; ++stage) {
    const int64_t out = 16 << (stage - 1);
    Module layer = b.NewModule("ResNetStage");
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
  m.register_module("fc", b.Linear(channels, num_classes));
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

const std::vector<ZooEntry>& ZooModels() {
  static const auto* const kModels = new std::vector<ZooEntry>{
      {"lenet5",
       "LeNet-5 with batch norm: conv5x5(6)-bn-relu-maxpool-conv5x5(16)-bn-relu-maxpool-fc120-"
       "relu-fc84-relu-fc; "
       "for Fashion-MNIST / MNIST, also takes 3x32x32",
       "1x28x28"},
      {"resnet20",
       "ResNet-20 (CIFAR-style): 16-32-64 channels, 3 stages x 3 basic blocks with batch norm, "
       "global average pool, fc; any channel count, 28x28 or 32x32",
       "3x32x32"},
  };
  return *kModels;
}

absl::StatusOr<torch::jit::Module> MakeZooModel(const std::string& name, int64_t in_channels,
                                                int64_t num_classes, uint64_t seed,
                                                int64_t input_size) {
  constexpr int64_t kMaxWidth = 65536;
  if (in_channels < 1 || in_channels > kMaxWidth || num_classes < 1 || num_classes > kMaxWidth) {
    return absl::InvalidArgumentError(absl::StrCat("in_channels (", in_channels,
                                                   ") and num_classes (", num_classes,
                                                   ") must be in [1, ", kMaxWidth, "]"));
  }
  if (input_size < 0) {
    return absl::InvalidArgumentError(absl::StrCat("input_size must be >= 0, got ", input_size));
  }
  try {
    Builder builder(seed);
    if (name == "lenet5") return MakeLeNet5(builder, in_channels, num_classes, input_size);
    if (name == "resnet20") return MakeResNet20(builder, in_channels, num_classes);
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError(absl::StrCat("out of memory building zoo model ", name));
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("building zoo model ", name, " failed: ", e.what()));
  }
  std::vector<std::string> known;
  for (const ZooEntry& e : ZooModels()) known.push_back(e.name);
  return absl::InvalidArgumentError(
      absl::StrCat("unknown zoo model '", name, "' (known: ", absl::StrJoin(known, ", "), ")"));
}

}  // namespace qnet::engine
