#include "workers/engine/job_runner.h"

#include <cmath>
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>
#include <torch/script.h>
#include <nlohmann/json.hpp>

#include "tests/engine/synthetic_idx.h"
#include "workers/engine/export/export.h"
#include "workers/engine/export/onnx_runtime.h"

namespace qnet::engine {
namespace {

class JobRunnerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(
        qnet::testing::WriteSyntheticIdx(qnet::testing::ProcessTempDir("runner_idx"), 200, 60));
  }
  static void TearDownTestSuite() { delete dir_; }

  static JobRun Config(const std::string& out) {
    JobRun c;
    c.spec.set_model("zoo:lenet5");
    c.spec.set_dataset("synthetic");
    c.context.dataset_dir = *dir_;
    c.context.dataset_format = "idx";
    c.spec.set_weight_bits(2);
    c.spec.set_activation_bits(2);
    c.spec.mutable_training()->set_pretrain_epochs(1);
    c.spec.mutable_training()->set_epochs(1);
    c.spec.mutable_training()->set_batch_size(32);
    c.context.device = "cpu";
    c.context.out_dir = ::testing::TempDir() + "/" + out;
    std::filesystem::remove_all(c.context.out_dir);
    return c;
  }

  static void SetExports(JobRun& run, std::initializer_list<const char*> formats) {
    run.spec.clear_export_formats();
    for (const char* f : formats) run.spec.add_export_formats(f);
  }
  static void SetNorm(JobRun& run, const std::vector<double>& mean,
                      const std::vector<double>& std) {
    v1::InputNormalization& n = *run.spec.mutable_input_normalization();
    n.mutable_mean()->Assign(mean.begin(), mean.end());
    n.mutable_std()->Assign(std.begin(), std.end());
  }
  static std::vector<double> Mean(const JobRun& run) {
    return {run.spec.input_normalization().mean().begin(),
            run.spec.input_normalization().mean().end()};
  }
  static std::vector<double> Std(const JobRun& run) {
    return {run.spec.input_normalization().std().begin(),
            run.spec.input_normalization().std().end()};
  }

  static std::string* dir_;
};

std::string* JobRunnerTest::dir_ = nullptr;

TEST_F(JobRunnerTest, WritesAllArtifactsAndMetrics) {
  JobRun config = Config("runner_out");
  config.spec.mutable_training()->set_pretrain_epochs(4);
  int progress = 0;
  JobCallbacks cb;
  cb.on_progress = [&](const ProgressEvent&) { ++progress; };
  absl::StatusOr<JobResult> result = RunJob(config, cb);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_GT(progress, 0);
  std::set<std::string> kinds;
  for (const ArtifactFile& a : result->artifacts) {
    kinds.insert(a.kind);
    EXPECT_TRUE(std::filesystem::exists(a.path)) << a.path;
  }
  // Every export format's artifacts: a writer that drops its artifact fails this.
  for (const char* kind : {"torchscript", "onnx", "packed", "manifest", "metrics"}) {
    EXPECT_EQ(kinds.count(kind), 1u) << kind;
  }
  std::ifstream in(config.context.out_dir + "/metrics.json");
  const nlohmann::json m = nlohmann::json::parse(in);
  for (const char* key :
       {"float_top1", "float_top5", "quantized_top1", "quantized_top5", "soft_top1", "hard_top1",
        "float_size_bytes", "packed_size_bytes", "compression_ratio", "device", "training_layout",
        "bits", "settings", "epochs"}) {
    EXPECT_TRUE(m.contains(key)) << key;
  }
  // The zoo LeNet-5 trains channels-last on the CPU (training/memory_layout.h).
  EXPECT_EQ(m["training_layout"], "channels_last");
  EXPECT_EQ(m["epochs"].size(), 5u);
  // The settings as run, defaults resolved: the seed and export formats the job left unset.
  EXPECT_EQ(m["settings"]["batch_size"], 32);
  EXPECT_EQ(m["settings"]["seed"], 1);
  EXPECT_EQ(m["settings"]["export_formats"].size(), 4u);
  EXPECT_EQ(result->metrics.effective_spec.training().seed(), 1u);
  EXPECT_EQ(result->metrics.effective_spec.export_formats_size(), 4);
  // The normalisation left unset resolves to the training split's statistics, as recorded.
  EXPECT_EQ(std::vector<double>(result->metrics.effective_spec.input_normalization().mean().begin(),
                                result->metrics.effective_spec.input_normalization().mean().end()),
            result->metrics.input_mean);
  EXPECT_GT(m["compression_ratio"].get<double>(), 1.0);
  EXPECT_EQ(
      m["packed_size_bytes"].get<int64_t>(),
      static_cast<int64_t>(std::filesystem::file_size(config.context.out_dir + "/model.qnet")));
  EXPECT_GT(result->metrics.quantized_top1, 0.5);
  // Parity: model.pt loaded back from its file, and model.onnx run by ONNX Runtime, score what
  // the engine's hard model scored (to within one of the 60 test images).
  ASSERT_TRUE(result->metrics.torchscript_top1.has_value());
  EXPECT_NEAR(*result->metrics.torchscript_top1, result->metrics.quantized_top1, 1.0 / 60 + 1e-9);
  ASSERT_TRUE(OnnxRuntimeAvailable().ok()) << OnnxRuntimeAvailable();
  ASSERT_TRUE(result->metrics.onnx_top1.has_value());
  EXPECT_NEAR(*result->metrics.onnx_top1, result->metrics.quantized_top1, 1.0 / 60 + 1e-9);
  EXPECT_EQ(m["parity"]["torchscript_top1"].get<double>(), *result->metrics.torchscript_top1);
  EXPECT_EQ(m["parity"]["onnx_top1"].get<double>(), *result->metrics.onnx_top1);
  EXPECT_EQ(m["parity"]["quantized_top1"].get<double>(), result->metrics.quantized_top1);
  std::ifstream manifest_in(config.context.out_dir + "/manifest.json");
  const nlohmann::json manifest = nlohmann::json::parse(manifest_in);
  EXPECT_EQ(manifest["layers"].size(), 3u);  // conv2, fc1, fc2
  EXPECT_TRUE(manifest["digests"].contains("model.qnet"));
  torch::jit::Module loaded = torch::jit::load(config.context.out_dir + "/model.pt");
  EXPECT_EQ(loaded.forward({torch::zeros({2, 1, 28, 28})}).toTensor().size(1), 10);
  // Every artifact says how its inputs were normalised: here, the train split's statistics.
  ASSERT_EQ(result->metrics.input_mean.size(), 1u);
  ASSERT_EQ(result->metrics.input_std.size(), 1u);
  EXPECT_GT(result->metrics.input_std[0], 0);
  for (const nlohmann::json& j : {m["input_normalization"], manifest["input_normalization"]}) {
    EXPECT_EQ(j["mean"].get<std::vector<double>>(), result->metrics.input_mean) << j;
    EXPECT_EQ(j["std"].get<std::vector<double>>(), result->metrics.input_std) << j;
    EXPECT_DOUBLE_EQ(j["pixel_scale"].get<double>(), 1.0 / 255.0);
  }
  EXPECT_EQ(loaded.attr("qnet_input_mean").toDoubleVector(), result->metrics.input_mean);
  EXPECT_EQ(loaded.attr("qnet_input_std").toDoubleVector(), result->metrics.input_std);
}

// A model trained with its own preprocessing is trained, evaluated and exported with it.
TEST_F(JobRunnerTest, GivenInputNormalizationIsUsedAndRecorded) {
  JobRun config = Config("runner_norm");
  SetNorm(config, {0.5}, {0.5});
  SetExports(config, {"torchscript", "metrics"});
  absl::StatusOr<JobResult> result = RunJob(config, {});
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->metrics.input_mean, std::vector<double>{0.5});
  EXPECT_EQ(result->metrics.input_std, std::vector<double>{0.5});
  std::ifstream in(config.context.out_dir + "/metrics.json");
  const nlohmann::json m = nlohmann::json::parse(in);
  EXPECT_EQ(m["input_normalization"]["mean"].get<std::vector<double>>(), Mean(config));
  torch::jit::Module loaded = torch::jit::load(config.context.out_dir + "/model.pt");
  EXPECT_EQ(loaded.attr("qnet_input_mean").toDoubleVector(), Mean(config));
  EXPECT_EQ(loaded.attr("qnet_input_std").toDoubleVector(), Std(config));

  // Three values for one-channel images: refused before any training, naming the mismatch.
  SetNorm(config, {0.5, 0.5, 0.5}, {0.5, 0.5, 0.5});
  result = RunJob(config, {});
  EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(result.status().message().find("3 channel(s)"), std::string::npos) << result.status();
}

TEST_F(JobRunnerTest, CancelledWhenAsked) {
  JobCallbacks cb;
  cb.should_stop = [] { return true; };
  absl::StatusOr<JobResult> result = RunJob(Config("runner_cancel"), cb);
  EXPECT_TRUE(absl::IsCancelled(result.status())) << result.status();
}

TEST_F(JobRunnerTest, BadModelFilesAreInvalidArgumentNamingTheFile) {
  JobRun config = Config("runner_bad");
  config.spec.set_model(::testing::TempDir() + "/does_not_exist.pt");
  absl::StatusOr<JobResult> r = RunJob(config, {});
  EXPECT_TRUE(absl::IsInvalidArgument(r.status())) << r.status();
  EXPECT_NE(r.status().message().find("does_not_exist.pt"), std::string::npos);

  config.spec.set_model(::testing::TempDir() + "/garbage.pt");
  std::ofstream(config.spec.model()) << "this is not a zip archive";
  r = RunJob(config, {});
  EXPECT_TRUE(absl::IsInvalidArgument(r.status())) << r.status();
  EXPECT_NE(r.status().message().find("garbage.pt"), std::string::npos);

  config.spec.set_model("zoo:nope");
  EXPECT_TRUE(absl::IsInvalidArgument(RunJob(config, {}).status()));
}

TEST_F(JobRunnerTest, BadSettingsAreInvalidArgument) {
  JobRun config = Config("runner_bad_settings");
  config.spec.set_weight_bits(0);
  EXPECT_TRUE(absl::IsInvalidArgument(RunJob(config, {}).status()));
  config = Config("runner_bad_settings");
  config.spec.set_activation_bits(9);
  EXPECT_TRUE(absl::IsInvalidArgument(RunJob(config, {}).status()));
  config = Config("runner_bad_settings");
  config.context.dataset_dir = ::testing::TempDir() + "/no_such_dataset";
  EXPECT_TRUE(absl::IsInvalidArgument(RunJob(config, {}).status()));
  config = Config("runner_bad_settings");
  config.spec.add_weight_levels(1.0);  // not increasing
  config.spec.add_weight_levels(0.0);
  EXPECT_TRUE(absl::IsInvalidArgument(RunJob(config, {}).status()));
  for (double w : {1.5, std::nan("")}) {
    config = Config("runner_bad_settings");
    config.spec.mutable_training()->set_distill_weight(w);
    const absl::Status s = RunJob(config, {}).status();
    EXPECT_TRUE(absl::IsInvalidArgument(s)) << s;
    EXPECT_NE(s.message().find("training.distill_weight"), std::string::npos) << s;
  }
  config = Config("runner_bad_settings");
  config.spec.mutable_input_normalization()->add_mean(0.5);  // no std
  const absl::Status s = RunJob(config, {}).status();
  EXPECT_TRUE(absl::IsInvalidArgument(s)) << s;
  EXPECT_NE(s.message().find("1 mean(s) and 0 std(s)"), std::string::npos) << s;
}

TEST_F(JobRunnerTest, UserTorchScriptModelRuns) {
  // A user's model: a zoo model saved to a file takes the file path.
  JobRun config = Config("runner_user");
  SetExports(config, {"metrics"});
  const std::string path = ::testing::TempDir() + "/user_model.pt";
  {
    JobRun zoo = Config("runner_user_zoo");
    zoo.spec.mutable_training()->set_epochs(0);
    zoo.spec.mutable_training()->set_pretrain_epochs(0);
    zoo.spec.set_activation_bits(0);
    SetExports(zoo, {"torchscript"});
    ASSERT_TRUE(RunJob(zoo, {}).ok());
    std::filesystem::copy_file(zoo.context.out_dir + "/model.pt", path,
                               std::filesystem::copy_options::overwrite_existing);
  }
  config.spec.set_model(path);
  absl::StatusOr<JobResult> r = RunJob(config, {});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->artifacts.size(), 1u);
  EXPECT_FALSE(r->metrics.torchscript_top1.has_value());  // no TorchScript artifact to score
}

TEST_F(JobRunnerTest, SavedFloatModelIsTheTrainedBaseline) {
  JobRun first = Config("runner_float_first");
  first.spec.mutable_training()->set_pretrain_epochs(2);
  first.spec.mutable_training()->set_epochs(0);
  SetExports(first, {"metrics"});
  first.context.float_model_path = ::testing::TempDir() + "/runner_float.pt";
  // Not the dataset's statistics, so that the second job can only match by reading the record.
  SetNorm(first, {0.5}, {0.25});
  absl::StatusOr<JobResult> trained = RunJob(first, {});
  ASSERT_TRUE(trained.ok()) << trained.status();
  // Like the artifacts, it says how its inputs are normalised.
  torch::jit::Module saved = torch::jit::load(first.context.float_model_path);
  EXPECT_EQ(saved.attr("qnet_input_mean").toDoubleVector(), Mean(first));
  EXPECT_EQ(saved.attr("qnet_input_std").toDoubleVector(), Std(first));

  // The saved model, given back as a user model with no normalisation named, is fed the way it
  // records and scores exactly the float accuracy it had.
  JobRun again = Config("runner_float_again");
  again.spec.set_model(first.context.float_model_path);
  again.spec.mutable_training()->set_pretrain_epochs(0);
  again.spec.mutable_training()->set_epochs(0);
  SetExports(again, {"metrics"});
  absl::StatusOr<JobResult> reloaded = RunJob(again, {});
  ASSERT_TRUE(reloaded.ok()) << reloaded.status();
  EXPECT_GT(trained->metrics.float_top1, 0.3);
  EXPECT_DOUBLE_EQ(reloaded->metrics.float_top1, trained->metrics.float_top1);
  EXPECT_DOUBLE_EQ(reloaded->metrics.float_top5, trained->metrics.float_top5);
  EXPECT_EQ(reloaded->metrics.input_mean, Mean(first));
  EXPECT_EQ(reloaded->metrics.input_std, Std(first));
  // A job that names a normalisation overrides the record.
  SetNorm(again, {0.25}, {0.5});
  reloaded = RunJob(again, {});
  ASSERT_TRUE(reloaded.ok()) << reloaded.status();
  EXPECT_EQ(reloaded->metrics.input_mean, Mean(again));
}

TEST(RecordedInputNormalizationTest, ReadsWhatIsRecordedAndRefusesMalformedRecords) {
  torch::jit::Module m("m");
  absl::StatusOr<std::optional<InputNormalization>> r = RecordedInputNormalization(m);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->has_value());
  ASSERT_TRUE(RecordInputNormalization(m, {0.1, 0.2}, {0.3, 0.4}).ok());
  r = RecordedInputNormalization(m);
  ASSERT_TRUE(r.ok() && r->has_value()) << r.status();
  EXPECT_EQ((*r)->mean, (std::vector<double>{0.1, 0.2}));
  EXPECT_EQ((*r)->std, (std::vector<double>{0.3, 0.4}));
  torch::jit::Module zero_std("z");
  ASSERT_TRUE(RecordInputNormalization(zero_std, {0.1}, {0}).ok());
  r = RecordedInputNormalization(zero_std);
  EXPECT_TRUE(absl::IsInvalidArgument(r.status())) << r.status();
  EXPECT_NE(r.status().message().find("std of channel 0"), std::string::npos) << r.status();
  torch::jit::Module mean_only("o");
  mean_only.register_attribute("qnet_input_mean", c10::ListType::ofFloats(),
                               c10::List<double>({0.5}));
  EXPECT_TRUE(absl::IsInvalidArgument(RecordedInputNormalization(mean_only).status()));
}

}  // namespace
}  // namespace qnet::engine
