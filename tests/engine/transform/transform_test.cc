#include "workers/engine/transform/transform.h"

#include <map>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "tests/engine/byom/quantized_inputs.h"
#include "workers/engine/quantization/levels.h"
#include "workers/engine/quantization/quantizer.h"
#include "workers/engine/zoo/zoo.h"
#include "workers/engine/zoo/zoo_builder.h"

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

// Every quantizer's alpha gradient is scaled by StepSizeLrFactor of its own levels, which a
// calibration that makes an activation quantizer signed changes; nothing else is touched.
TEST(Transform, ScalesEachAlphaGradientByItsLevels) {
  for (int bits : {2, 8}) {
    auto q = Make("lenet5", bits, bits);
    q->SetActivationLevels(0, *WeightLevels(bits, WeightLevelScheme::kUniform),
                           torch::arange(bits == 2 ? 2 : 254) - (bits == 2 ? 0.5 : 126.5));
    q->module().train(true);
    q->SetTemperature(5.0);
    q->SetActivationsEnabled(true);
    q->RefreshWeights();
    torch::manual_seed(3);
    torch::cross_entropy_loss(q->Forward(torch::randn({4, 1, 28, 28})), torch::tensor({1, 2, 3, 4}))
        .backward();
    std::vector<torch::Tensor> alphas, betas, levels;
    for (const QuantizedLayer& l : q->layers()) {
      alphas.push_back(l.alpha);
      betas.push_back(l.beta);
      levels.push_back(l.levels);
    }
    for (const ActivationQuantizer& a : q->activation_quantizers()) {
      alphas.push_back(a.alpha);
      betas.push_back(a.beta);
      levels.push_back(a.levels);
    }
    std::vector<double> alpha_grads, beta_grads;
    for (const torch::Tensor& a : alphas) alpha_grads.push_back(a.grad().item<double>());
    for (const torch::Tensor& b : betas) beta_grads.push_back(b.grad().item<double>());
    q->ScaleStepSizeGradients();
    for (size_t i = 0; i < alphas.size(); ++i) {
      const double max_level = levels[i].abs().max().item<double>();
      const double factor = bits == 2 ? 1.0 : 9.0 / (max_level * max_level);
      EXPECT_NE(alpha_grads[i], 0) << i;
      EXPECT_FLOAT_EQ(alphas[i].grad().item<double>(), alpha_grads[i] * factor)
          << bits << " bits, quantizer " << i << ", max level " << max_level;
      EXPECT_EQ(betas[i].grad().item<double>(), beta_grads[i]) << i;
    }
  }
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
  const std::vector<torch::Tensor> seen = q->TakeObservedActivations();
  ASSERT_EQ(seen.size(), q->activation_quantizers().size());
  // fc1's input: 2 images of 16x5x5 features.
  EXPECT_EQ(seen[1].numel(), 2 * 16 * 5 * 5);
  for (const torch::Tensor& s : seen) {
    EXPECT_GT(s.numel(), 0);
    EXPECT_GE(s.min().item<double>(), 0.0);  // ReLU outputs
  }
  // Taken once: the next take sees only what ran since.
  EXPECT_EQ(q->TakeObservedActivations()[0].numel(), 0);
  q->SetCalibrating(false);
  q->Forward(torch::randn({2, 1, 28, 28}));
  EXPECT_EQ(q->TakeObservedActivations()[0].numel(), 0);
}

// A model whose code hides its layers from their parents: registered in another order than they
// run, a conv shared by two calls and registered under a second name, a conv used through its
// weight by a functional call of the root, and a nested container.
torch::jit::Module TangledModel() {
  ZooBuilder b(3);
  torch::jit::Module root = b.NewModule("Tangled");
  root.register_module("head", b.Linear(4, 10));
  root.register_module("proj", b.Conv(4, 4, 1, 1, 0));
  torch::jit::Module block = b.NewModule("Block");
  block.register_module("shared", b.Conv(4, 4, 3, 1, 1));
  block.define(R"(
def forward(self, x):
    return self.shared.forward(torch.relu(self.shared.forward(x)))
)");
  torch::jit::Module outer = b.NewModule("Outer");
  outer.register_module("block", block);
  outer.define("def forward(self, x):\n    return self.block.forward(x)\n");
  root.register_module("outer", outer);
  root.register_module("alias", block.attr("shared").toModule());
  root.register_module("stem", b.Conv(1, 4, 3, 1, 1));
  root.define(R"(
def forward(self, x):
    x = torch.relu(self.stem.forward(x))
    x = self.outer.forward(x)
    x = x + torch.conv2d(x, self.proj.weight, self.proj.bias)
    x = torch.relu(self.alias.forward(x))
    return self.head.forward(torch.flatten(torch.adaptive_avg_pool2d(x, [1, 1]), 1))
)");
  return root;
}

TEST(Transform, FindsLayersByWhatTheForwardDoes) {
  const std::vector<LayerRef> layers = FindQuantizableLayers(TangledModel(), false);
  std::vector<std::string> names;
  for (const LayerRef& l : layers) names.push_back(l.name);
  EXPECT_EQ(names, (std::vector<std::string>{"stem", "outer.block.shared", "proj", "head"}));
  EXPECT_FALSE(layers.front().quantize);
  EXPECT_FALSE(layers.back().quantize);
  EXPECT_TRUE(layers[1].quantize && layers[2].quantize);
  EXPECT_EQ(layers.front().in_channels, 1);
  EXPECT_EQ(layers.back().in_channels, 4);
}

TEST(Transform, QuantizesTheInputOfEveryUseOfAQuantizedLayer) {
  torch::jit::Module model = TangledModel();
  absl::StatusOr<std::unique_ptr<QuantizedModel>> q =
      QuantizedModel::Create(model.clone(), Spec(2, 2));
  ASSERT_TRUE(q.ok()) << q.status();
  // clone() copies the conv registered under a second name: two layers from there on.
  EXPECT_EQ(LayerNames(**q), (std::set<std::string>{"outer.block.shared", "proj", "alias"}));
  ASSERT_EQ((*q)->activation_quantizers().size(), 3u);
  // Both calls of the shared conv, the alias's and the functional use of proj's weight all read a
  // quantized input; stem and head read float ones.
  std::map<std::string, std::vector<bool>> inputs;
  for (const testing::LayerInput& in : testing::LayerInputs((*q)->module())) {
    inputs[in.layer].push_back(in.quantized);
  }
  EXPECT_EQ(inputs["stem"], std::vector<bool>{false});
  EXPECT_EQ(inputs["outer.block.shared"], (std::vector<bool>{true, true}));
  EXPECT_EQ(inputs["alias"], std::vector<bool>{true});
  EXPECT_EQ(inputs["proj"], std::vector<bool>{true});
  EXPECT_EQ(inputs["head"], std::vector<bool>{false});
  // The shared layer's quantizer records the inputs of both its calls.
  (*q)->SetActivationsEnabled(false);
  (*q)->SetCalibrating(true);
  torch::NoGradGuard no_grad;
  (*q)->Forward(torch::randn({2, 1, 8, 8}));
  EXPECT_EQ((*q)->TakeObservedActivations()[0].numel(), 2 * 2 * 4 * 8 * 8);
}

}  // namespace
}  // namespace qnet::engine
