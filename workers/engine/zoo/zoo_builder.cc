#include "workers/engine/zoo/zoo_builder.h"

#include <cmath>

#include <ATen/CPUGeneratorImpl.h>

namespace qnet::engine {
namespace {

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

torch::Tensor Param(const torch::Tensor& t) { return t.detach().contiguous().requires_grad_(true); }

}  // namespace

ZooBuilder::ZooBuilder(uint64_t seed)
    : cu_(std::make_shared<torch::jit::CompilationUnit>()),
      gen_(at::make_generator<at::CPUGeneratorImpl>(seed)) {}

torch::jit::Module ZooBuilder::NewModule(const std::string& class_name) {
  torch::jit::Module m(c10::QualifiedName("__torch__.qnet." + class_name), cu_,
                       /*shouldMangle=*/true);
  // Module::train()/eval() (C++ and Python) set this attribute on every submodule.
  m.register_attribute("training", c10::BoolType::get(), true);
  return m;
}

torch::jit::Module ZooBuilder::Conv(int64_t in, int64_t out, int64_t kernel, int64_t stride,
                                    int64_t padding) {
  torch::jit::Module m = NewModule("Conv2d");
  const double std = std::sqrt(2.0 / static_cast<double>(in * kernel * kernel));
  m.register_parameter("weight", Param(torch::randn({out, in, kernel, kernel}, gen_) * std), false);
  m.register_parameter("bias", Param(torch::zeros({out})), false);
  m.register_attribute("stride", c10::IntType::get(), stride);
  m.register_attribute("padding", c10::IntType::get(), padding);
  m.define(kConvForward);
  return m;
}

torch::jit::Module ZooBuilder::Linear(int64_t in, int64_t out) {
  torch::jit::Module m = NewModule("Linear");
  const double std = std::sqrt(2.0 / static_cast<double>(in));
  m.register_parameter("weight", Param(torch::randn({out, in}, gen_) * std), false);
  m.register_parameter("bias", Param(torch::zeros({out})), false);
  m.register_attribute("in_features", c10::IntType::get(), in);
  m.register_attribute("out_features", c10::IntType::get(), out);
  m.define(kLinearForward);
  return m;
}

torch::jit::Module ZooBuilder::BatchNorm(int64_t channels) {
  torch::jit::Module m = NewModule("BatchNorm2d");
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

}  // namespace qnet::engine
