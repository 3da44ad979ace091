// The input pipeline inside RunJob: the preprocessing and class names recorded in the effective
// spec and in every artifact, and an undecodable image of a streaming dataset failing the job as
// INVALID_ARGUMENT (not retried) naming the file.
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <torch/script.h>
#include <nlohmann/json.hpp>

#include "tests/engine/data/synthetic_format.h"
#include "workers/engine/job_runner.h"

namespace qnet::testing {
QNET_REGISTER_DATASET_FORMAT(SyntheticFormat);
}  // namespace qnet::testing

namespace qnet::engine {
namespace {

using ::qnet::testing::SetSyntheticDataset;
using ::qnet::testing::SyntheticDataset;

JobRun Config(const std::string& dataset, const std::string& out) {
  JobRun c;
  c.spec.set_model("zoo:lenet5");
  c.spec.set_dataset("synthetic");
  c.spec.set_weight_bits(2);
  c.spec.mutable_training()->set_epochs(1);
  c.spec.mutable_training()->set_batch_size(16);
  c.context.dataset_dir = dataset;
  c.context.dataset_format = "synthetic";
  c.context.device = "cpu";
  c.context.out_dir = ::testing::TempDir() + "/" + out;
  std::filesystem::remove_all(c.context.out_dir);
  return c;
}

nlohmann::json ReadJson(const std::string& path) {
  std::ifstream in(path);
  return nlohmann::json::parse(in);
}

TEST(PipelineJobTest, PreprocessingAndClassNamesAreRecordedEverywhere) {
  // Grey images without a test split, for a model given the input shape it takes.
  SetSyntheticDataset(
      "/synthetic/job",
      {.train = 60, .test = 0, .classes = 10, .channels = 1, .height = 30, .width = 30, .vary = 2});
  JobRun config = Config("/synthetic/job", "pipeline_job_out");
  config.spec.set_input_shape("1x28x28");
  config.spec.mutable_preprocessing()->set_horizontal_flip(true);
  config.spec.mutable_preprocessing()->set_random_resized_crop(true);
  absl::StatusOr<JobResult> result = RunJob(config, {});
  ASSERT_TRUE(result.ok()) << result.status();
  const JobMetrics& m = result->metrics;
  std::vector<std::string> names;
  for (int c = 0; c < 10; ++c) names.push_back("class" + std::to_string(c));
  EXPECT_EQ(m.class_names, names);
  // The effective spec says how the job ran, defaults resolved.
  const v1::JobSpec& spec = m.effective_spec;
  EXPECT_EQ(spec.input_shape(), "1x28x28");
  EXPECT_EQ(spec.preprocessing().resize_size(), 28);
  EXPECT_TRUE(spec.preprocessing().has_random_resized_crop());
  EXPECT_TRUE(spec.preprocessing().random_resized_crop());
  EXPECT_EQ(spec.preprocessing().crop_scale_min(), 0.5);  // the default fraction
  EXPECT_EQ(spec.preprocessing().crop_scale_max(), 1.0);
  EXPECT_TRUE(spec.preprocessing().horizontal_flip());
  EXPECT_DOUBLE_EQ(spec.preprocessing().holdout_fraction(), 0.1);
  EXPECT_TRUE(m.holdout);

  const std::string out = config.context.out_dir;
  const nlohmann::json metrics = ReadJson(out + "/metrics.json");
  const nlohmann::json manifest = ReadJson(out + "/manifest.json");
  torch::jit::Module model = torch::jit::load(out + "/model.pt");
  const nlohmann::json attr = nlohmann::json::parse(model.attr("qnet_preprocessing").toStringRef());
  for (const nlohmann::json& p : {metrics["preprocessing"], manifest["preprocessing"], attr}) {
    EXPECT_EQ(p["input_shape"], nlohmann::json({1, 28, 28})) << p;
    EXPECT_EQ(p["resize"]["size"], 28);
    EXPECT_EQ(p["center_crop"], nlohmann::json({28, 28}));
    EXPECT_EQ(p["train_augmentation"]["crop"], "random_resized");
    EXPECT_EQ(p["train_augmentation"]["horizontal_flip"], true);
    EXPECT_EQ(p["test_split"]["source"], "holdout");
    EXPECT_DOUBLE_EQ(p["test_split"]["fraction"].get<double>(), 0.1);
    EXPECT_EQ(p["mean"].get<std::vector<double>>(), m.input_mean);
  }
  EXPECT_EQ(metrics["class_names"].get<std::vector<std::string>>(), names);
  EXPECT_EQ(manifest["class_names"].get<std::vector<std::string>>(), names);
  std::vector<std::string> attr_names;
  for (const c10::IValue& v : model.attr("qnet_class_names").toListRef()) {
    attr_names.push_back(v.toStringRef());
  }
  EXPECT_EQ(attr_names, names);
}

TEST(PipelineJobTest, AnUndecodableImageFailsTheJobNamingTheFile) {
  SetSyntheticDataset("/synthetic/bad", {.train = 40,
                                         .test = 8,
                                         .classes = 10,
                                         .channels = 1,
                                         .height = 28,
                                         .width = 28,
                                         .vary = 0,
                                         .bad_train = 33});
  JobRun config = Config("/synthetic/bad", "pipeline_job_bad");
  // Streaming, with a given normalisation: nothing is decoded before training reaches the image.
  config.context.dataset_memory_budget_bytes = 1;
  config.spec.mutable_input_normalization()->add_mean(0.5);
  config.spec.mutable_input_normalization()->add_std(0.5);
  absl::StatusOr<JobResult> result = RunJob(config, {});
  EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument) << result.status();
  EXPECT_EQ(result.status().message(), "train/3/33.png: truncated PNG data");
  // In memory the same image fails the load.
  config.context.dataset_memory_budget_bytes = int64_t{1} << 30;
  result = RunJob(config, {});
  EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument) << result.status();
  EXPECT_EQ(result.status().message(), "train/3/33.png: truncated PNG data");
}

}  // namespace
}  // namespace qnet::engine
