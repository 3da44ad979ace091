#include "workers/engine/transform/transform.h"

#include <set>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "workers/engine/quantization/levels.h"
#include "workers/engine/quantization/quantizer.h"
#include "workers/engine/zoo/zoo.h"

namespace qnet::engine {
namespace {

QuantSpec Spec(int weight_bits, int activation_bits) {
  QuantSpec spec;
  spec.weight_levels = *WeightLevels(weight_bits);
  if (activation_bits > 0) spec.activation_levels = *ActivationLevels(activation_bits);
  return spec;
}

std::unique_ptr<QuantizedModel> Make(const std::string& zoo, int wb, int ab) {
  absl::StatusOr<torch::jit::Module> m = MakeZooModel(zoo, 1, 10, 7);
  EXPECT_TRUE(m.ok()) << m.status();
  absl::StatusOr<std::unique_ptr<QuantizedModel>> q =
      QuantizedModel::Create(m->clone(), Spec(wb, ab));
  EXPECT_TRUE(q.ok()) << q.status();
  return *std::move(q);
}

std::set<std::string> LayerNames(QuantizedModel& q) {
  std::set<std::string> names;
  for (const QuantizedLayer& l : q.layers()) names.insert(l.name);
  return names;
}

TEST(Transform, FindsLayersKeepsFirstAndLastFloat) {
  auto q = Make("lenet5", 2, 2);
  EXPECT_EQ(LayerNames(*q), (std::set<std::string>{"conv2", "fc1", "fc2"}));
  // The first quantized layer's input (after conv1) is quantized too: it is not the image.
  std::set<std::string> act;
  for (const ActivationQuantizer& a : q->activation_quantizers()) act.insert(a.layer);
  EXPECT_EQ(act, (std::set<std::string>{"conv2", "fc1", "fc2"}));
  for (const ActivationQuantizer& a : q->activation_quantizers()) {
    EXPECT_NE(a.module.type()->name()->qualifiedName().find("QnetActivationQuantizer"),
              std::string::npos);
  }
}

TEST(Transform, ResNetQuantizesAllButFirstConvAndLastLinear) {
  auto q = Make("resnet20", 2, 2);
  const std::vector<LayerRef> all = FindQuantizableLayers(q->module(), true);
  EXPECT_EQ(q->layers().size(), all.size() - 2);
  const std::set<std::string> names = LayerNames(*q);
  EXPECT_EQ(names.count(all.front().name), 0u);
  EXPECT_EQ(names.count(all.back().name), 0u);
  EXPECT_FALSE(all.back().is_conv);
  EXPECT_EQ(q->activation_quantizers().size(), q->layers().size());
}

TEST(Transform, QuantizeFirstLastQuantizesEverything) {
  absl::StatusOr<torch::jit::Module> m = MakeZooModel("lenet5", 1, 10, 7);
  ASSERT_TRUE(m.ok());
  QuantSpec spec = Spec(2, 2);
  spec.quantize_first_last = true;
  auto q = QuantizedModel::Create(m->clone(), spec);
  ASSERT_TRUE(q.ok()) << q.status();
  EXPECT_EQ((*q)->layers().size(), 5u);
  // The image input of the first layer stays float.
  for (const ActivationQuantizer& a : (*q)->activation_quantizers()) EXPECT_NE(a.layer, "conv1");
}

TEST(Transform, GradientsReachLatentsAndQuantizerParameters) {
  for (const char* zoo : {"lenet5", "resnet20"}) {
    auto q = Make(zoo, 2, 2);
    q->module().train(true);
    q->SetTemperature(5.0);
    q->SetActivationsEnabled(true);
    q->RefreshWeights();
    torch::manual_seed(3);
    const torch::Tensor x = torch::randn({4, 1, 28, 28});
    const torch::Tensor loss =
        torch::cross_entropy_loss(q->Forward(x), torch::tensor({1, 2, 3, 4}));
    loss.backward();
    for (const QuantizedLayer& l : q->layers()) {
      ASSERT_TRUE(l.latent.grad().defined()) << zoo << " " << l.name;
      EXPECT_GT(l.latent.grad().abs().sum().item<double>(), 0) << zoo << " " << l.name;
      EXPECT_TRUE(l.alpha.grad().defined()) << l.name;
      EXPECT_TRUE(l.beta.grad().defined()) << l.name;
    }
    for (const ActivationQuantizer& a : q->activation_quantizers()) {
      ASSERT_TRUE(a.alpha.grad().defined()) << zoo << " " << a.name;
      ASSERT_TRUE(a.beta.grad().defined()) << zoo << " " << a.name;
      EXPECT_NE(a.alpha.grad().item<double>(), 0) << a.name;
    }
    for (const torch::Tensor& p : q->OtherParameters()) EXPECT_TRUE(p.grad().defined());
  }
}

TEST(Transform, SoftAndHardWeights) {
  auto q = Make("lenet5", 2, 0);
  q->SetTemperature(5.0);
  q->SetHard(false);
  q->RefreshWeights();
  const QuantizedLayer& l = q->layers()[0];
  const torch::Tensor soft = l.module.attr("weight").toTensor();
  EXPECT_GT(std::get<0>(torch::_unique(soft.detach())).numel(), 3);
  q->SetHard(true);
  q->RefreshWeights();
  const torch::Tensor hard = l.module.attr("weight").toTensor();
  const torch::Tensor values = std::get<0>(torch::_unique(hard));
  EXPECT_LE(values.numel(), 3);
  // Hard weights are exactly alpha * q_j, and match the fused op's hard mode.
  const torch::Tensor fused = Quantize(l.latent.detach(), l.alpha.detach(), l.beta.detach(),
                                       l.levels, l.thresholds.detach(), 5.0, true);
  EXPECT_TRUE(torch::equal(hard, fused));
}

// The trainer's mix: soft weights, hard-forward activations whose backward is still the soft
// gradient, so latents and activation quantizer parameters all learn.
TEST(Transform, SoftWeightsWithHardActivationsTrain) {
  auto q = Make("lenet5", 2, 2);
  q->SetTemperature(5.0, 2.0);
  q->SetActivationsEnabled(true);
  q->SetHard(/*weights_hard=*/false, /*activations_hard=*/true);
  q->RefreshWeights();
  for (const ActivationQuantizer& a : q->activation_quantizers()) {
    EXPECT_TRUE(a.module.attr("hard").toBool()) << a.name;
  }
  const torch::Tensor w = q->layers()[0].module.attr("weight").toTensor();
  EXPECT_GT(std::get<0>(torch::_unique(w.detach())).numel(), 3);
  q->module().train(true);
  torch::manual_seed(6);
  const torch::Tensor loss = torch::cross_entropy_loss(q->Forward(torch::randn({4, 1, 28, 28})),
                                                       torch::tensor({0, 1, 2, 3}));
  loss.backward();
  for (const QuantizedLayer& l : q->layers()) {
    ASSERT_TRUE(l.latent.grad().defined()) << l.name;
    EXPECT_GT(l.latent.grad().abs().sum().item<double>(), 0) << l.name;
  }
  for (const ActivationQuantizer& a : q->activation_quantizers()) {
    ASSERT_TRUE(a.alpha.grad().defined()) << a.name;
    ASSERT_TRUE(a.beta.grad().defined()) << a.name;
    EXPECT_NE(a.alpha.grad().item<double>(), 0) << a.name;
  }
}

// The hard model equals the float model with hand-applied hard quantizers (lenet5's structure).
TEST(Transform, HardForwardEqualsManualQuantization) {
  auto q = Make("lenet5", 2, 2);
  // Non-trivial activation ranges.
  for (size_t i = 0; i < q->activation_quantizers().size(); ++i) {
    q->SetActivationQuantizer(i, 0.3 + 0.1 * i, 1.0 / (0.3 + 0.1 * i),
                              torch::tensor({0.5, 1.5, 2.5}));
  }
  q->SetHard(true);
  q->SetActivationsEnabled(true);
  q->RefreshWeights();
  q->module().eval();
  torch::NoGradGuard no_grad;
  torch::manual_seed(5);
  const torch::Tensor x = torch::randn({3, 1, 28, 28});
  const torch::Tensor got = q->Forward(x);

  auto weight = [&](const std::string& name) {
    return q->module().attr(name).toModule().attr("weight").toTensor();
  };
  auto bias = [&](const std::string& name) {
    return q->module().attr(name).toModule().attr("bias").toTensor();
  };
  auto act = [&](size_t i, const torch::Tensor& v) {
    const ActivationQuantizer& a = q->activation_quantizers()[i];
    return QuantizeComposite(v, a.alpha, a.beta, a.levels, a.thresholds, 1.0, true);
  };
  size_t ai = 0;
  torch::Tensor h = torch::relu(torch::conv2d(x, weight("conv1"), bias("conv1"), 1, 2));
  h = torch::max_pool2d(h, {2, 2}, {2, 2});
  // conv2 is the first quantized layer: its input (not the image) is quantized only when listed.
  bool conv2_act = false;
  for (const ActivationQuantizer& a : q->activation_quantizers()) conv2_act |= a.layer == "conv2";
  if (conv2_act) h = act(ai++, h);
  h = torch::relu(torch::conv2d(h, weight("conv2"), bias("conv2")));
  h = torch::max_pool2d(h, {2, 2}, {2, 2});
  h = torch::adaptive_avg_pool2d(h, {5, 5}).flatten(1);
  h = torch::relu(torch::linear(act(ai++, h), weight("fc1"), bias("fc1")));
  h = torch::relu(torch::linear(act(ai++, h), weight("fc2"), bias("fc2")));
  const torch::Tensor want = torch::linear(h, weight("fc3"), bias("fc3"));
  EXPECT_TRUE(torch::allclose(got, want, 1e-5, 1e-5)) << (got - want).abs().max();
}

TEST(Transform, CalibrationRecordsInputs) {
  auto q = Make("lenet5", 2, 2);
  q->SetActivationsEnabled(false);
  q->SetCalibrating(true);
  torch::NoGradGuard no_grad;
  q->Forward(torch::randn({2, 1, 28, 28}));
  const std::vector<torch::Tensor> seen = q->ObservedActivations();
  ASSERT_EQ(seen.size(), q->activation_quantizers().size());
  for (const torch::Tensor& s : seen) {
    EXPECT_EQ(s.size(0), 2);
    EXPECT_GE(s.min().item<double>(), 0.0);  // ReLU outputs
  }
  q->SetCalibrating(false);
  EXPECT_EQ(q->ObservedActivations()[0].numel(), 0);
}

}  // namespace
}  // namespace qnet::engine
