// Channels-last training (memory_layout.h): which models take it, that switching layouts keeps
// each parameter's identity and values, and that a QN step computes the same in either layout.

#include "workers/engine/training/memory_layout.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <iostream>
#include <utility>
#include <vector>

#include "workers/engine/quantization/levels.h"
#include "workers/engine/transform/transform.h"
#include "workers/engine/zoo/zoo.h"
#include "workers/engine/zoo/zoo_builder.h"

namespace qnet::engine {
namespace {

torch::jit::Module ZooModel(const std::string& name) {
  absl::StatusOr<torch::jit::Module> m = MakeZooModel(name, 1, 10, 1);
  EXPECT_TRUE(m.ok()) << m.status();
  return *m;
}

bool AllContiguous(const std::vector<torch::Tensor>& tensors) {
  for (const torch::Tensor& t : tensors) {
    if (!t.is_contiguous()) return false;
  }
  return true;
}

TEST(MemoryLayoutTest, ZooModelsTrainChannelsLastAndStayUntouched) {
  for (const char* name : {"lenet5", "resnet20"}) {
    torch::jit::Module m = ZooModel(name);
    EXPECT_TRUE(ChannelsLastTrains(m, torch::randn({4, 1, 28, 28}))) << name;
    EXPECT_TRUE(AllContiguous(ModuleParameters(m))) << name;
    for (const torch::Tensor& p : ModuleParameters(m)) EXPECT_FALSE(p.grad().defined()) << name;
  }
}

// `x.view(N, -1)` on a convolution's NHWC output throws: such a model trains in NCHW.
TEST(MemoryLayoutTest, AModelThatViewsItsActivationsStaysContiguous) {
  ZooBuilder b(1);
  torch::jit::Module m = b.NewModule("Net");
  m.register_module("conv", b.Conv(3, 4, 3, 1, 1));
  m.register_module("fc", b.Linear(4 * 8 * 8, 10));
  m.define(R"(
def forward(self, x):
    x = torch.relu(self.conv.forward(x))
    return self.fc.forward(x.view(x.size(0), -1))
)");
  const torch::Tensor batch = torch::randn({4, 3, 8, 8});
  EXPECT_FALSE(ChannelsLastTrains(m, batch));
  EXPECT_NO_THROW(m.forward({batch}));  // the model itself is fine in its own layout
  EXPECT_FALSE(ChannelsLastTrains(ZooModel("resnet20"), torch::randn({1, 1, 28, 28})));
}

TEST(MemoryLayoutTest, SwitchingKeepsIdentityAndValues) {
  torch::jit::Module m = ZooModel("resnet20");
  const std::vector<torch::Tensor> params = ModuleParameters(m);
  std::vector<torch::Tensor> before;
  for (const torch::Tensor& p : params) before.push_back(p.detach().clone());
  SetChannelsLast(params, true);
  const std::vector<torch::Tensor> after = ModuleParameters(m);
  int nhwc = 0;
  for (size_t i = 0; i < params.size(); ++i) {
    EXPECT_EQ(after[i].unsafeGetTensorImpl(), params[i].unsafeGetTensorImpl());
    EXPECT_TRUE(torch::equal(after[i], before[i]));
    if (after[i].dim() == 4) {
      EXPECT_TRUE(after[i].is_contiguous(torch::MemoryFormat::ChannelsLast));
      nhwc += !after[i].is_contiguous();
    }
  }
  EXPECT_GT(nhwc, 0);
  SetChannelsLast(params, false);
  EXPECT_TRUE(AllContiguous(ModuleParameters(m)));
}

// Relative error of `got` against `reference` (computed in double), as a norm ratio.
double RelativeError(const torch::Tensor& got, const torch::Tensor& reference) {
  const torch::Tensor ref = reference.to(torch::kDouble);
  return ((got.to(torch::kDouble) - ref).norm() / ref.norm()).item<double>();
}

// The same QN-transformed ResNet-20 (soft weights and activations) in either layout against a
// double-precision run: outputs and latent gradients as exact in NHWC as in NCHW, and the
// quantized weights in the latents' layout. A gradient reaching a quantizer in the wrong layout
// would pair each element with another's gradient: an error of order 1, not of float rounding
// (steep soft quantizers amplify that to a few tenths of a percent in either layout).
TEST(MemoryLayoutTest, QuantizedStepIsAsExactInEitherLayout) {
  QuantSpec spec;
  spec.weight_levels = *WeightLevels(2);
  spec.activation_levels = *ActivationLevels(2);
  const torch::jit::Module float_model = ZooModel("resnet20");
  torch::manual_seed(4);
  const torch::Tensor x = torch::randn({8, 1, 28, 28});
  // Runs the step: float NCHW, float NHWC or double NCHW.
  const auto step = [&](torch::ScalarType dtype, bool nhwc) {
    torch::jit::Module m = float_model.clone();
    m.to(dtype);
    std::unique_ptr<QuantizedModel> q = *QuantizedModel::Create(m, spec);
    SetChannelsLast(ModuleParameters(*q), nhwc);
    q->module().train(true);
    q->SetActivationsEnabled(true);
    q->SetTemperature(10.0);
    q->SetHard(false);
    q->RefreshWeights();
    const torch::Tensor w = q->layers()[1].module.attr("weight").toTensor();
    EXPECT_EQ(w.is_contiguous(torch::MemoryFormat::ChannelsLast), nhwc);
    EXPECT_EQ(w.is_contiguous(), !nhwc);
    const torch::Tensor out = q->Forward(x.to(dtype));
    out.pow(2).sum().backward();
    std::vector<torch::Tensor> grads;
    for (const torch::Tensor& l : q->LatentWeights()) grads.push_back(l.grad().flatten());
    return std::pair{out.detach(), torch::cat(grads)};
  };
  const auto reference = step(torch::kDouble, false);
  for (const bool nhwc : {false, true}) {
    SCOPED_TRACE(nhwc ? "NHWC" : "NCHW");
    const auto got = step(torch::kFloat, nhwc);
    const double output_error = RelativeError(got.first, reference.first);
    const double gradient_error = RelativeError(got.second, reference.second);
    // Printed: docs/METHOD.md ("Memory layout") quotes both layouts' errors.
    std::cout << (nhwc ? "NHWC" : "NCHW") << " relative error against double: outputs "
              << output_error << ", latent gradients " << gradient_error << "\n";
    EXPECT_LT(output_error, 1e-4);
    EXPECT_LT(gradient_error, 2e-2);
  }
}

}  // namespace
}  // namespace qnet::engine
