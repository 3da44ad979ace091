#include "workers/engine/export/export.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>
#include <torch/script.h>
#include <torch/torch.h>

#include "workers/engine/export/onnx_runtime.h"
#include "workers/engine/quantization/levels.h"
#include "workers/engine/zoo/zoo.h"

namespace qnet::engine {
namespace {

TEST(PackCodes, RoundTripIsExactForEveryWidth) {
  torch::manual_seed(1);
  for (int bits = 1; bits <= 8; ++bits) {
    for (int64_t n : {0, 1, 7, 8, 9, 1001}) {
      const torch::Tensor codes = torch::randint(0, int64_t{1} << bits, {n}, torch::kLong);
      const std::string packed = PackCodes(codes, bits);
      EXPECT_EQ(static_cast<int64_t>(packed.size()), (n * bits + 7) / 8);
      absl::StatusOr<torch::Tensor> back = UnpackCodes(packed, n, bits);
      ASSERT_TRUE(back.ok());
      EXPECT_TRUE(torch::equal(*back, codes)) << bits << " bits, " << n;
    }
  }
  EXPECT_FALSE(UnpackCodes("x", 9, 1).ok());
  EXPECT_EQ(CodeBits(2), 1);
  EXPECT_EQ(CodeBits(3), 2);
  EXPECT_EQ(CodeBits(7), 3);
  EXPECT_EQ(CodeBits(256), 8);
}

class ExportTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    absl::StatusOr<torch::jit::Module> m = MakeZooModel(GetParam(), 1, 10, 11);
    ASSERT_TRUE(m.ok());
    float_model_ = *m;
    QuantSpec spec;
    spec.weight_levels = *WeightLevels(3);
    spec.activation_levels = *ActivationLevels(2);
    auto q = QuantizedModel::Create(float_model_.clone(), spec);
    ASSERT_TRUE(q.ok()) << q.status();
    q_ = *std::move(q);
    for (size_t i = 0; i < q_->activation_quantizers().size(); ++i) {
      q_->SetActivationQuantizer(i, 0.4, 2.5, torch::tensor({0.5, 1.5, 2.5}));
    }
    q_->SetHard(true);
    q_->RefreshWeights();
    q_->module().eval();
    dir_ = ::testing::TempDir() + "/export_" + GetParam();
    std::filesystem::create_directories(dir_);
  }

  torch::jit::Module float_model_;
  std::unique_ptr<QuantizedModel> q_;
  std::string dir_;
};

TEST_P(ExportTest, PackedModelDecodesToTheHardModuleExactly) {
  absl::StatusOr<torch::jit::Module> hard = BuildHardModule(float_model_, *q_);
  ASSERT_TRUE(hard.ok()) << hard.status();
  const std::string path = dir_ + "/model.qnet";
  absl::StatusOr<PackedModel> packed = WritePackedModel(*hard, *q_, path);
  ASSERT_TRUE(packed.ok()) << packed.status();
  EXPECT_EQ(packed->file_bytes, static_cast<int64_t>(std::filesystem::file_size(path)));
  absl::StatusOr<std::map<std::string, torch::Tensor>> decoded = DecodePackedModel(path);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  int quantized = 0;
  for (const PackedEntry& e : packed->entries) quantized += e.quantized;
  EXPECT_EQ(quantized, static_cast<int>(q_->layers().size()));
  for (const auto& p : hard->named_parameters(true)) {
    ASSERT_EQ(decoded->count(p.name), 1u) << p.name;
    EXPECT_TRUE(torch::equal(decoded->at(p.name), p.value)) << p.name;
  }
  for (const auto& b : hard->named_buffers(true)) {
    EXPECT_TRUE(torch::equal(decoded->at(b.name), b.value)) << b.name;
  }
  // 3-bit weights: the codes take 3 bits each.
  for (const PackedEntry& e : packed->entries) {
    if (!e.quantized) continue;
    int64_t n = 1;
    for (int64_t d : e.shape) n *= d;
    EXPECT_EQ(e.bytes, (n * 3 + 7) / 8) << e.name;
  }
  const nlohmann::json manifest =
      ManifestJson(*packed, {{"model.qnet", packed->file_sha256}}, 1000);
  EXPECT_EQ(manifest["layers"].size(), q_->layers().size());
  EXPECT_EQ(manifest["totals"]["packed_size_bytes"], packed->file_bytes);
}

TEST_P(ExportTest, DecoderRejectsGarbage) {
  const std::string path = dir_ + "/garbage.qnet";
  // Lengths 9 and 9, then a header that is not zlib data.
  const char corrupt[] = "QNETPK02\x09\0\0\0\0\0\0\0\x09\0\0\0\0\0\0\0{not json";
  std::ofstream(path, std::ios::binary) << std::string(corrupt, sizeof corrupt - 1);
  EXPECT_TRUE(absl::IsInvalidArgument(DecodePackedModel(path).status()));
  std::ofstream(path, std::ios::trunc) << "hello";
  EXPECT_TRUE(absl::IsInvalidArgument(DecodePackedModel(path).status()));
}

TEST_P(ExportTest, TorchScriptArtifactLoadsAndMatchesTheEngine) {
  absl::StatusOr<torch::jit::Module> hard = BuildHardModule(float_model_, *q_);
  ASSERT_TRUE(hard.ok()) << hard.status();
  const std::string path = dir_ + "/model.pt";
  ASSERT_TRUE(SaveModule(*hard, path).ok());
  torch::jit::Module loaded = torch::jit::load(path);
  loaded.eval();
  torch::NoGradGuard no_grad;
  torch::manual_seed(2);
  const torch::Tensor x = torch::randn({5, 1, 28, 28});
  const torch::Tensor want = q_->Forward(x);
  const torch::Tensor got = loaded.forward({x}).toTensor();
  EXPECT_TRUE(torch::allclose(got, want, 1e-5, 1e-5)) << (got - want).abs().max();
  // The contract the ONNX exporter reads.
  int quantizers = 0;
  for (const auto& m : loaded.named_modules()) {
    const std::string type = m.value.type()->name()->qualifiedName();
    if (type.find("QnetActivationQuantizer") != std::string::npos) {
      ++quantizers;
      EXPECT_EQ(m.value.attr("alpha").toTensor().dim(), 0);
      EXPECT_EQ(m.value.attr("beta").toTensor().dim(), 0);
      EXPECT_EQ(m.value.attr("levels").toTensor().dim(), 1);
      EXPECT_EQ(m.value.attr("thresholds").toTensor().dim(), 1);
      EXPECT_TRUE(m.value.attr("hard").toBool());
      EXPECT_TRUE(m.value.attr("temperature").isDouble());
    }
  }
  EXPECT_EQ(quantizers, static_cast<int>(q_->activation_quantizers().size()));
  for (const QuantizedLayer& l : q_->layers()) {
    absl::StatusOr<torch::jit::Module> m = SubmoduleAt(loaded, l.name);
    ASSERT_TRUE(m.ok());
    const double alpha = m->attr("qnet_alpha").toDouble();
    const torch::Tensor levels = m->attr("qnet_levels").toTensor();
    const torch::Tensor w = m->attr("weight").toTensor();
    EXPECT_LE(std::get<0>(torch::_unique(w)).numel(), 7);
    // Every weight is exactly alpha * q_j for some level.
    const torch::Tensor candidates = torch::tensor(static_cast<float>(alpha)) * levels;
    EXPECT_TRUE(w.unsqueeze(-1).eq(candidates).any(-1).all().item<bool>()) << l.name;
  }
  // The float model is untouched by export.
  EXPECT_FALSE(float_model_.hasattr("qnet_act_fc1"));
}

INSTANTIATE_TEST_SUITE_P(Zoo, ExportTest, ::testing::Values("lenet5", "resnet20"));

// A file ONNX Runtime cannot load is an error naming it, not a crash and not a score.
TEST(OnnxRuntimeTop1, RefusesAFileThatIsNotAModel) {
  ASSERT_TRUE(OnnxRuntimeAvailable().ok()) << OnnxRuntimeAvailable();
  const std::string path = ::testing::TempDir() + "/not_a_model.onnx";
  std::ofstream(path) << "not a protobuf";
  TensorDataset test{torch::zeros({2, 1, 28, 28}), torch::zeros({2}, torch::kLong)};
  const absl::StatusOr<double> top1 = OnnxRuntimeTop1(path, test, 2);
  ASSERT_FALSE(top1.ok());
  EXPECT_EQ(top1.status().code(), absl::StatusCode::kInternal);
  EXPECT_NE(top1.status().message().find(path), std::string::npos) << top1.status();
}

}  // namespace
}  // namespace qnet::engine
