// Bring your own model: torchvision classification families and a hand-written module, saved by
// PyTorch as TorchScript, scripted or traced (make_models.py, which the byom_models ctest fixture
// runs), each trained through a short job on a tiny synthetic CIFAR-10; and malformed models, each
// refused before any training, fast, with a message naming the problem and a failure the worker
// does not retry.
#include <chrono>
#include <cmath>
#include <ostream>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <torch/script.h>

#include "tests/engine/byom/quantized_inputs.h"
#include "tests/engine/short_job.h"
#include "tests/engine/synthetic_idx.h"
#include "workers/engine/job_runner.h"
#include "workers/engine/transform/transform.h"

namespace qnet::engine {
namespace {

using Clock = std::chrono::steady_clock;

std::string Fixture(const std::string& name) {
  return std::string(QNET_BYOM_FIXTURES) + "/" + name;
}

// W2A2, no pre-training, one QN epoch over 20 images in batches of 4: every phase, calibration,
// batch-norm re-estimation and the TorchScript export run.
JobRun Config(const std::string& model) {
  JobRun run = testing::ShortJob(Fixture(model + ".pt"), 2, Fixture("cifar10"), "cifar10",
                                 testing::ProcessTempDir("byom_" + model));
  run.spec.add_export_formats("torchscript");
  return run;
}

const c10::ivalue::Object* Identity(const torch::jit::Module& m) { return m._ivalue().get(); }

class ByomModelTest : public ::testing::TestWithParam<const char*> {};

TEST_P(ByomModelTest, TrainsToTheEndWithQuantizedWeightsAndInputs) {
  const std::string name = GetParam();
  const JobRun run = Config(name);
  absl::StatusOr<JobResult> result = RunJob(run, {});
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_TRUE(std::isfinite(result->metrics.quantized_top1));

  const torch::jit::Module saved = torch::jit::load(run.context.out_dir + "/model.pt");
  // Hard 2-bit weights take at most the three ternary values.
  std::set<const c10::ivalue::Object*> quantized;
  for (const auto& named : saved.named_modules()) {
    const torch::jit::Module& m = named.value;
    if (!m.hasattr("qnet_alpha") || m.attr("qnet_alpha").toDouble() == 0) continue;
    quantized.insert(Identity(m));
    const torch::Tensor w = m.attr("weight").toTensor();
    EXPECT_LE(std::get<0>(torch::_unique(w)).numel(), 3) << named.name;
  }
  EXPECT_FALSE(quantized.empty());
  // Every op using a quantized layer reads a quantized input; the first layer reads the image.
  const std::vector<testing::LayerInput> inputs = testing::LayerInputs(saved);
  ASSERT_FALSE(inputs.empty());
  EXPECT_FALSE(inputs.front().quantized) << inputs.front().layer;
  std::set<const c10::ivalue::Object*> used;
  for (const testing::LayerInput& in : inputs) {
    absl::StatusOr<torch::jit::Module> layer = SubmoduleAt(saved, in.layer);
    ASSERT_TRUE(layer.ok()) << layer.status();
    if (quantized.count(Identity(*layer)) == 0) continue;
    EXPECT_TRUE(in.quantized) << in.layer;
    used.insert(Identity(*layer));
  }
  EXPECT_EQ(used, quantized);
}

INSTANTIATE_TEST_SUITE_P(
    Families, ByomModelTest,
    ::testing::Values("resnet18_script", "mobilenet_v2_trace", "efficientnet_b0_script",
                      "shufflenet_v2_x0_5_trace", "densenet_small_script", "convnext_tiny_trace",
                      "mobilenet_v3_small_script", "squeezenet1_1_trace", "googlenet_trace",
                      "regnet_x_400mf_script", "handwritten_script", "handwritten_trace"),
    [](const ::testing::TestParamInfo<const char*>& info) { return std::string(info.param); });

// Inputs after ReLU keep unsigned levels; inputs that calibration sees clearly negative (after
// LayerNorm, GELU, SiLU) get signed ones (docs/METHOD.md).
TEST(ByomSignedActivations, NegativeInputsGetSignedLevels) {
  const JobRun run = Config("handwritten_script");
  absl::StatusOr<JobResult> result = RunJob(run, {});
  ASSERT_TRUE(result.ok()) << result.status();
  const torch::jit::Module saved = torch::jit::load(run.context.out_dir + "/model.pt");
  const auto first_level = [&](const std::string& quantizer) {
    return saved.attr(quantizer).toModule().attr("levels").toTensor()[0].item<double>();
  };
  EXPECT_EQ(first_level("qnet_act_project"), 0.0);    // after ReLU
  EXPECT_EQ(first_level("qnet_act_se_expand"), 0.0);  // after ReLU
  EXPECT_LT(first_level("qnet_act_mlp_0"), 0.0);      // after LayerNorm
  EXPECT_LT(first_level("qnet_act_mlp_2"), 0.0);      // after GELU
  EXPECT_LT(first_level("qnet_act_depthwise"), 0.0);  // SiLU and Hardswish outputs, shuffled
}

struct Refusal {
  const char* model;
  absl::StatusCode code;
  std::vector<std::string> says;
};

// ctest lists each case by its model rather than by the struct's bytes.
void PrintTo(const Refusal& refusal, std::ostream* os) { *os << refusal.model; }

class ByomRefusalTest : public ::testing::TestWithParam<Refusal> {};

TEST_P(ByomRefusalTest, FailsFastWithThePreciseErrorAndIsNotRetried) {
  const Refusal& refusal = GetParam();
  const Clock::time_point start = Clock::now();
  const absl::Status status = RunJob(Config(refusal.model), {}).status();
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(15));
  EXPECT_EQ(status.code(), refusal.code) << status;
  for (const std::string& words : refusal.says) {
    EXPECT_NE(status.message().find(words), std::string::npos) << words << " in: " << status;
  }
  EXPECT_FALSE(IsRetryableFailure(status)) << status;
}

INSTANTIATE_TEST_SUITE_P(
    Malformed, ByomRefusalTest,
    ::testing::Values(
        Refusal{
            "not_torchscript",
            absl::StatusCode::kInvalidArgument,
            {"not_torchscript.pt", "not a TorchScript archive (not a ZIP file)", "torch.jit.save"}},
        Refusal{"truncated", absl::StatusCode::kInvalidArgument, {"damaged or truncated"}},
        Refusal{"state_dict", absl::StatusCode::kInvalidArgument, {"without TorchScript code"}},
        Refusal{"no_layers",
                absl::StatusCode::kInvalidArgument,
                {"no Conv2d or Linear layer", "nothing to quantize"}},
        Refusal{"tuple_output",
                absl::StatusCode::kInvalidArgument,
                {"returns a tuple, Tuple[Tensor, Tensor], in eval mode",
                 "trace the model in eval mode"}},
        Refusal{"wrong_classes",
                absl::StatusCode::kInvalidArgument,
                {"outputs 1000 classes, the dataset has 10"}},
        Refusal{"wrong_channels",
                absl::StatusCode::kInvalidArgument,
                {"stem.0 expects 1 input channels, the job feeds [N,3,32,32]; set --input-shape "
                 "1x32x32"}},
        Refusal{"fails_in_training",
                absl::StatusCode::kFailedPrecondition,
                {"training failed", "this model refuses to train"}}),
    [](const ::testing::TestParamInfo<Refusal>& info) { return std::string(info.param.model); });

}  // namespace
}  // namespace qnet::engine
