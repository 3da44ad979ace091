// `qnet-worker run` end to end on a tiny synthetic IDX dataset: the real binary writes every
// artifact and prints its table; the TorchScript artifact loads in stock PyTorch (python3), is
// really quantized, and computes what the engine's own hard evaluation computes.
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include <gtest/gtest.h>
#include <torch/serialize.h>
#include <nlohmann/json.hpp>

#include "tests/engine/synthetic_idx.h"
#include "workers/engine/export/export.h"
#include "workers/engine/training/trainer.h"
#include "workers/engine/zoo/zoo.h"

namespace {

struct Output {
  int status = -1;
  std::string text;
};

// Runs a shell command, capturing stdout (stderr goes to a file next to it).
Output RunCommand(const std::string& command) {
  Output out;
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return out;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), pipe)) > 0) out.text.append(buf.data(), n);
  const int rc = pclose(pipe);
  out.status = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
  return out;
}

std::string Slurp(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

class LocalRun : public ::testing::Test {
 protected:
  void SetUp() override {
    base_ = qnet::testing::ProcessTempDir("local_run");
    std::filesystem::remove_all(base_);
    data_ = qnet::testing::WriteSyntheticIdx(base_ + "/idx", 300, 100);
  }
  std::string base_, data_;
};

TEST_F(LocalRun, BinaryWritesArtifactsAndTable) {
  const std::string out = base_ + "/out";
  const Output r = RunCommand(std::string(QNET_WORKER_BIN) + " run --model zoo:lenet5 --dataset " +
                              data_ + " --weight-bits 2 --activation-bits 2 --pretrain-epochs 2 " +
                              "--epochs 1 --batch-size 32 --device cpu --out " + out + " 2>" +
                              base_ + "/stderr.txt");
  ASSERT_EQ(r.status, 0) << r.text << Slurp(base_ + "/stderr.txt");
  EXPECT_NE(r.text.find("quantized"), std::string::npos) << r.text;
  EXPECT_NE(r.text.find("ratio"), std::string::npos) << r.text;
  // Not a terminal: one progress line per epoch or phase, no carriage returns.
  const std::string err = Slurp(base_ + "/stderr.txt");
  EXPECT_NE(err.find("epoch 3/3"), std::string::npos) << err;
  EXPECT_EQ(err.find('\r'), std::string::npos);
  for (const char* f : {"model.pt", "model.qnet", "manifest.json", "metrics.json"}) {
    EXPECT_TRUE(std::filesystem::exists(out + "/" + f)) << f;
  }
  const nlohmann::json m = nlohmann::json::parse(Slurp(out + "/metrics.json"));
  EXPECT_GT(m["quantized_top1"].get<double>(), 0.5);
  EXPECT_GT(m["compression_ratio"].get<double>(), 1.0);
  // The reported accuracy is what a user gets from the artifact and the raw test images.
  const Output check =
      RunCommand(std::string(QNET_PYTHON) + " " + QNET_CHECK_PY + " " + out +
                 "/model.pt --accuracy " + data_ + " " + out + "/metrics.json 2>&1");
  EXPECT_EQ(check.status, 0) << check.text;
  // The script's last line counts the quantized layers: conv2, fc1, fc2.
  std::string last = check.text.substr(0, check.text.find_last_not_of("\n") + 1);
  last = last.substr(last.find_last_of('\n') + 1);
  EXPECT_EQ(last, "3") << check.text;
  EXPECT_NE(r.text.find("inputs: (pixel/255 - mean) / std, mean "), std::string::npos) << r.text;
  // The benchmark's image-by-image comparison, on a model against itself: no discordant images.
  const Output paired = RunCommand(std::string(QNET_PYTHON) + " -W ignore " + QNET_PAIRED_PY + " " +
                                   out + "/model.pt " + out + "/model.pt " + data_ + " 2>&1");
  EXPECT_EQ(paired.status, 0) << paired.text;
  EXPECT_NE(paired.text.find("only float right 0, only quantized right 0"), std::string::npos)
      << paired.text;
  EXPECT_NE(paired.text.find("difference +0 images, exact McNemar p = 1.000"), std::string::npos)
      << paired.text;
}

// A model trained on its own preprocessing: the job uses it, and the artifact carries it.
TEST_F(LocalRun, GivenInputNormalizationTravelsWithTheArtifact) {
  const std::string out = base_ + "/out_norm";
  const Output r =
      RunCommand(std::string(QNET_WORKER_BIN) + " run --model zoo:lenet5 --dataset " + data_ +
                 " --weight-bits 2 --pretrain-epochs 2 --epochs 1 " +
                 "--batch-size 32 --device cpu --input-mean 0.5 --input-std 0.25 " +
                 "--export torchscript,metrics --out " + out + " 2>" + base_ + "/stderr_norm.txt");
  ASSERT_EQ(r.status, 0) << r.text << Slurp(base_ + "/stderr_norm.txt");
  EXPECT_NE(r.text.find("mean 0.5 std 0.25"), std::string::npos) << r.text;
  const Output check =
      RunCommand(std::string(QNET_PYTHON) + " " + QNET_CHECK_PY + " " + out +
                 "/model.pt --accuracy " + data_ + " " + out + "/metrics.json 2>&1");
  EXPECT_EQ(check.status, 0) << check.text;
  // Three values for one-channel images: one line, exit 2, before any training.
  const Output bad =
      RunCommand(std::string(QNET_WORKER_BIN) + " run --model zoo:lenet5 --dataset " + data_ +
                 " --input-mean 0.5,0.5,0.5 --input-std 1,1,1 --out " + base_ + "/bad_norm 2>&1");
  EXPECT_EQ(bad.status, 2) << bad.text;
  EXPECT_NE(bad.text.find("3 channel(s)"), std::string::npos) << bad.text;
}

TEST_F(LocalRun, BadArgumentsExitTwoWithOneLine) {
  Output r =
      RunCommand(std::string(QNET_WORKER_BIN) + " run --model zoo:lenet5 --dataset nowhere " +
                 "--weight-bits 2 --out " + base_ + "/bad 2>&1");
  EXPECT_EQ(r.status, 2) << r.text;
  EXPECT_EQ(std::count(r.text.begin(), r.text.end(), '\n'), 1) << r.text;
  r = RunCommand(std::string(QNET_WORKER_BIN) + " run --model zoo:lenet5 --dataset " + data_ +
                 " --weight-bits 9 --out " + base_ + "/bad 2>&1");
  EXPECT_EQ(r.status, 2) << r.text;
  r = RunCommand(std::string(QNET_WORKER_BIN) + " run --model " + base_ + "/missing.pt --dataset " +
                 data_ + " --epochs 0 --out " + base_ + "/bad 2>&1");
  EXPECT_EQ(r.status, 2) << r.text;
  EXPECT_NE(r.text.find("missing.pt"), std::string::npos) << r.text;
}

// The artifact in stock PyTorch against the engine's own hard forward on the same images.
TEST_F(LocalRun, TorchScriptMatchesEngineHardEvaluation) {
  absl::StatusOr<qnet::engine::DatasetSplits> data = qnet::engine::LoadDataset(data_, "idx", {});
  ASSERT_TRUE(data.ok());
  qnet::engine::JobRun config;
  config.spec.set_model("zoo:resnet20");
  config.spec.set_weight_bits(3);
  config.spec.set_activation_bits(2);
  config.spec.mutable_training()->set_pretrain_epochs(1);
  config.spec.mutable_training()->set_epochs(1);
  config.spec.mutable_training()->set_batch_size(50);
  config.spec.mutable_training()->set_seed(1);
  config.context.dataset_dir = data_;
  config.context.dataset_format = "idx";
  config.context.device = "cpu";
  qnet::engine::Trainer trainer(config, {}, *data, torch::kCPU,
                                *qnet::engine::MakeZooModel("resnet20", 1, 10, 1));
  ASSERT_TRUE(trainer.Run().ok());
  absl::StatusOr<torch::jit::Module> hard =
      qnet::engine::BuildHardModule(trainer.float_model(), trainer.quantized());
  ASSERT_TRUE(hard.ok()) << hard.status();
  const std::string model = base_ + "/resnet.pt";
  ASSERT_TRUE(qnet::engine::SaveModule(*hard, model).ok());
  torch::NoGradGuard no_grad;
  const torch::Tensor x =
      qnet::engine::NormaliseImages(data->test.images.slice(0, 0, 16), data->test);
  const torch::Tensor y = trainer.quantized().Forward(x);
  c10::Dict<std::string, torch::Tensor> io;
  io.insert("input", x);
  io.insert("output", y);
  const std::vector<char> bytes = torch::pickle_save(io);
  std::ofstream(base_ + "/io.pt", std::ios::binary).write(bytes.data(), bytes.size());
  const Output check = RunCommand(std::string(QNET_PYTHON) + " " + QNET_CHECK_PY + " " + model +
                                  " " + base_ + "/io.pt 2>&1");
  EXPECT_EQ(check.status, 0) << check.text;
}

}  // namespace
