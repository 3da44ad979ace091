// The ONNX importer: torchvision families (make_onnx_models.py's FAMILIES, which the
// onnx_import_models ctest fixture exports) and a hand-written graph of every mapped op import,
// match ONNX Runtime's outputs on the same random inputs, expose their layers and batch norms to
// the QN transform, and train through a short job whose artifacts pass the checks of
// tests/engine/export/torchvision_check.py; a graph whose batch norms the exporter folded gets
// them restored, as the identity until a job sets them from its data; malformed files are refused
// with a message naming the problem.
#include <sys/wait.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <torch/script.h>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "tests/engine/onnx_import/onnx_fixture_files.h"
#include "tests/engine/short_job.h"
#include "tests/engine/synthetic_idx.h"
#include "workers/engine/job_runner.h"
#include "workers/engine/model_source/model_source.h"
#include "workers/engine/model_source/onnx/importer.h"
#include "workers/engine/model_source/onnx/onnx_file.h"
#include "workers/engine/training/evaluation.h"
#include "workers/engine/transform/transform.h"

namespace qnet::engine {
namespace {

using onnx_import::ImportedModel;

std::string Fixture(const std::string& name) {
  return std::string(QNET_ONNX_FIXTURES) + "/" + name;
}

ImportedModel Import(const std::string& name) {
  return testing::ImportOnnxFixture(Fixture(name + ".onnx"));
}

struct Family {
  const char* name;
  size_t layers;       // Conv (not transposed), Gemm, MatMul with a constant weight
  size_t batch_norms;  // BatchNormalization, and those restored behind folded convolutions
};

std::ostream& operator<<(std::ostream& os, const Family& f) { return os << f.name; }

class OnnxFamilyTest : public ::testing::TestWithParam<Family> {};

TEST_P(OnnxFamilyTest, MatchesOnnxRuntimeAtAnyBatchSize) {
  ImportedModel m = Import(GetParam().name);
  ASSERT_TRUE(m.input_shape.has_value());
  std::vector<int64_t> shape = {2};
  shape.insert(shape.end(), m.input_shape->begin(), m.input_shape->end());
  const torch::Tensor x =
      testing::ReadFloats(Fixture(std::string(GetParam().name) + ".input.bin"), shape);
  const torch::Tensor want =
      testing::ReadFloats(Fixture(std::string(GetParam().name) + ".expected.bin"), {2, 10});
  m.module.eval();
  torch::NoGradGuard no_grad;
  const torch::Tensor y = m.module.forward({x}).toTensor();
  ASSERT_EQ(y.sizes(), want.sizes());
  EXPECT_LT((y - want).abs().max().item<double>(), 1e-4);
  const torch::Tensor one = m.module.forward({x.slice(0, 1, 2)}).toTensor();
  EXPECT_LT((one - want.slice(0, 1, 2)).abs().max().item<double>(), 1e-4);
}

TEST_P(OnnxFamilyTest, TheTransformFindsEveryLayerAndBatchNorm) {
  const ImportedModel m = Import(GetParam().name);
  EXPECT_EQ(FindQuantizableLayers(m.module, false).size(), GetParam().layers);
  EXPECT_EQ(FindBatchNorms(m.module).size(), GetParam().batch_norms);
}

INSTANTIATE_TEST_SUITE_P(
    Fixtures, OnnxFamilyTest,
    ::testing::Values(Family{"resnet18", 21, 20}, Family{"mobilenet_v3_small", 54, 34},
                      Family{"efficientnet_b0", 82, 49}, Family{"densenet121", 121, 62},
                      Family{"convnext_tiny", 59, 0}, Family{"shufflenet_v2_x0_5", 57, 56},
                      Family{"ops", 7, 1}, Family{"small_cnn", 6, 3}, Family{"small_cnn_bn", 6, 3}),
    [](const auto& info) { return std::string(info.param.name); });

TEST(OnnxImport, TheDeclaredInputShapeIsTheJobsDefault) {
  absl::StatusOr<std::unique_ptr<OpenedModel>> opened = OpenModel(Fixture("ops.onnx"));
  ASSERT_TRUE(opened.ok()) << opened.status();
  EXPECT_EQ((*opened)->DeclaredInputShape(), "3x16x16");
}

struct Malformed {
  const char* file;
  const char* message;  // a part of the error
};

std::ostream& operator<<(std::ostream& os, const Malformed& m) { return os << m.file; }

class OnnxMalformedTest : public ::testing::TestWithParam<Malformed> {};

TEST_P(OnnxMalformedTest, IsRefusedNamingTheProblem) {
  absl::StatusOr<std::unique_ptr<OpenedModel>> opened = OpenModel(Fixture(GetParam().file));
  ASSERT_FALSE(opened.ok());
  EXPECT_EQ(opened.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(opened.status().message().find(GetParam().message), std::string::npos)
      << opened.status();
}

INSTANTIATE_TEST_SUITE_P(
    Files, OnnxMalformedTest,
    ::testing::Values(
        Malformed{"not_protobuf.onnx", "not a TorchScript archive (not a ZIP file) nor an ONNX"},
        Malformed{"truncated.onnx",
                  "ModelProto protobuf does not parse (the file may be truncated"},
        Malformed{"missing_initializer.onnx", "reads 'w', which is no graph input, initializer"},
        Malformed{"cyclic.onnx", "the graph has a cycle"},
        Malformed{"unsupported_op.onnx", "does not support TopK (node 'pick_top'"},
        Malformed{"external_outside.onnx", "external data location '../outside.bin'"},
        Malformed{"old_opset.onnx", "ONNX opset 11 is older than 13"}),
    [](const auto& info) {
      std::string name = info.param.file;
      return name.substr(0, name.find('.'));
    });

// Runs `torchvision_check.py check DIR BITS` (tests/engine/export); its exit status, its output in
// *out.
int TorchvisionCheck(const std::string& dir, int bits, std::string* out) {
  const std::string log = dir + "/check.log";
  const std::string cmd = absl::StrCat(QNET_TEST_PYTHON, " -W ignore ", QNET_TORCHVISION_CHECK_PY,
                                       " check ", dir, " ", bits, " > ", log, " 2>&1");
  const int rc = std::system(cmd.c_str());
  std::stringstream text;
  text << std::ifstream(log).rdbuf();
  *out = text.str();
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

void WriteFloats(const torch::Tensor& t, const std::string& path) {
  const torch::Tensor c = t.detach().contiguous();
  std::ofstream(path, std::ios::binary)
      .write(static_cast<const char*>(c.data_ptr()), static_cast<std::streamsize>(c.nbytes()));
}

// A short job (tests/engine/short_job.h) on the fixture `name` (its declared 3x32x32 input) over
// 20 synthetic images, `bits` for weights and activations.
// A short job on `file` (a fixture's file name) at W`bits`A`bits`.
JobRun SyntheticJob(const std::string& file, int bits) {
  return testing::ShortJob(
      Fixture(file), bits, testing::WriteSyntheticIdx(testing::ProcessTempDir("onnx_idx"), 20, 8),
      "idx", testing::ProcessTempDir(absl::StrCat("onnx_job_", file, "_w", bits)));
}

class OnnxJobTest : public ::testing::TestWithParam<const char*> {};

// W2A2 over 20 synthetic images in batches of 4, no pre-training: the imported model goes through
// calibration, QN training, batch-norm re-estimation and every export. The artifacts then pass
// torchvision_check.py: model.pt loads in stock PyTorch and computes what it computes here, each
// quantized layer's weight takes at most its levels' values, and model.onnx passes the full
// checker, stores 4-bit weight codes and agrees with model.pt in ONNX Runtime.
TEST_P(OnnxJobTest, TrainsAndExportsThroughAJob) {
  const std::string name = GetParam();
  const JobRun run = SyntheticJob(name + ".onnx", 2);
  absl::StatusOr<JobResult> result = RunJob(run, {});
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->metrics.effective_spec.input_shape(), "3x32x32");

  const std::string& dir = run.context.out_dir;
  torch::jit::Module saved = torch::jit::load(dir + "/model.pt");
  saved.eval();
  torch::manual_seed(3);
  const torch::Tensor x = torch::randn({4, 3, 32, 32});
  torch::Tensor logits;
  {
    torch::NoGradGuard no_grad;
    logits = saved.forward({x}).toTensor();
  }
  ASSERT_EQ(logits.sizes(), (std::vector<int64_t>{4, 10}));
  WriteFloats(x, dir + "/input.bin");
  WriteFloats(logits, dir + "/engine.bin");
  std::ofstream(dir + "/shape.txt") << "4 3 32 32 10\n";
  std::string out;
  EXPECT_EQ(TorchvisionCheck(dir, 2, &out), 0) << out;
  std::cout << name << ": " << out;
}

INSTANTIATE_TEST_SUITE_P(Families, OnnxJobTest,
                         ::testing::Values("resnet18", "mobilenet_v3_small", "efficientnet_b0",
                                           "densenet121", "convnext_tiny", "shufflenet_v2_x0_5"),
                         [](const auto& info) { return std::string(info.param); });

// The hand-written graph with every op the importer maps fine-tunes through a W2A2 job into a
// TorchScript artifact; asked for ONNX too, the job fails naming an op the exporter does not
// convert rather than writing a file that misrepresents the model.
TEST(OnnxImport, TheGraphOfEveryOpFineTunesThroughAJob) {
  JobRun run = SyntheticJob("ops.onnx", 2);
  run.spec.clear_export_formats();
  for (const char* format : {"torchscript", "packed", "metrics"})
    run.spec.add_export_formats(format);
  absl::StatusOr<JobResult> result = RunJob(run, {});
  ASSERT_TRUE(result.ok()) << result.status();
  ASSERT_FALSE(result->metrics.epochs.empty());
  EXPECT_TRUE(std::isfinite(result->metrics.epochs.back().train_loss));
  torch::jit::Module saved = torch::jit::load(run.context.out_dir + "/model.pt");
  saved.eval();
  EXPECT_EQ(saved.forward({torch::zeros({2, 3, 16, 16})}).toTensor().sizes(),
            (std::vector<int64_t>{2, 10}));

  JobRun with_onnx = SyntheticJob("ops.onnx", 2);
  with_onnx.spec.add_export_formats("onnx");
  with_onnx.context.out_dir += "_onnx";
  torch::NoGradGuard no_grad;  // the caller's grad mode does not reach the job's training
  absl::StatusOr<JobResult> refused = RunJob(with_onnx, {});
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("ONNX export has no converter for aten::"),
            std::string::npos)
      << refused.status();
}

TEST(OnnxFoldedBatchNorms, AreRestoredBehindConvolutionsButNotGatesOrTheClassifier) {
  // small_cnn: its three conv-BN-ReLU blocks' convolutions, not its squeeze-and-excitation
  // gate's two nor its classifier conv.
  EXPECT_EQ(Import("small_cnn").restored_batch_norms.size(), 3u);
  // Graphs with any normalisation node keep what they have.
  for (const char* name : {"small_cnn_bn", "densenet121", "convnext_tiny", "ops"}) {
    EXPECT_TRUE(Import(name).restored_batch_norms.empty()) << name;
  }
}

// 16 images, as the job's data set would give them (already normalised floats).
TensorDataset RandomImages(int64_t n) {
  torch::manual_seed(5);
  TensorDataset data;
  data.images = torch::randn({n, 3, 32, 32}) * 0.8 + 0.3;
  data.labels = torch::zeros({n}, torch::kLong);
  return data;
}

// Relative to the largest logit: max |a - b| / max |b|.
double RelativeDifference(const torch::Tensor& a, const torch::Tensor& b) {
  return (a - b).abs().max().item<double>() / b.abs().max().item<double>();
}

TEST(OnnxFoldedBatchNorms, AreTheIdentityInTrainModeOnceSetFromTheData) {
  ImportedModel m = Import("small_cnn");
  const TensorDataset data = RandomImages(16);
  torch::NoGradGuard no_grad;
  m.module.eval();
  const torch::Tensor eval_logits = m.module.forward({data.images}).toTensor();
  // As imported, train mode normalises each restored batch norm's input to mean 0, variance 1.
  m.module.train();
  EXPECT_GT(RelativeDifference(m.module.forward({data.images}).toTensor(), eval_logits), 0.1);

  ImportedModel fresh = Import("small_cnn");
  ASSERT_TRUE(InitIdentityBatchNorms(fresh.module, fresh.restored_batch_norms, data,
                                     /*batch_size=*/16, /*seed=*/1, torch::kCPU, /*batches=*/1)
                  .ok());
  fresh.module.eval();
  const torch::Tensor set_eval = fresh.module.forward({data.images}).toTensor();
  EXPECT_LT(RelativeDifference(set_eval, eval_logits), 1e-5);  // eval mode: still the identity
  // Train mode on the calibration batch itself: each batch norm normalises by the statistics it
  // was set from and scales back, so what differs is float32 rounding through three layers.
  fresh.module.train();
  EXPECT_LT(RelativeDifference(fresh.module.forward({data.images}).toTensor(), eval_logits), 1e-4);
}

// W4A4 on the folded file and on the same model with its batch norms kept: both finish, the
// folded file's model trains with the restored batch norms set from the job's images (the float
// model the job saves has running statistics, not the import's 0 and 1) and keeps them in its
// artifact. Those checks are what fail without restoration: on a job this small the folded
// file's loss stays near the kept file's either way (1.164 against 1.159 without it), so the
// loss bound only guards against divergence; the collapse itself is measured at scale
// (docs/BENCHMARKS.md, "ONNX in, TorchScript in").
TEST(OnnxFoldedBatchNorms, TrainLikeTheModelExportedWithItsBatchNorms) {
  std::map<std::string, double> loss;
  for (const char* name : {"small_cnn", "small_cnn_bn"}) {
    JobRun run = SyntheticJob(absl::StrCat(name, ".onnx"), 4);
    run.context.float_model_path = run.context.out_dir + "/float.pt";
    absl::StatusOr<JobResult> result = RunJob(run, {});
    ASSERT_TRUE(result.ok()) << name << ": " << result.status();
    ASSERT_FALSE(result->metrics.epochs.empty());
    loss[name] = result->metrics.epochs.back().train_loss;
    // metrics.json says which batch norms were restored: the folded file's three, none kept.
    std::ifstream metrics_file(run.context.out_dir + "/metrics.json");
    const nlohmann::json metrics = nlohmann::json::parse(metrics_file);
    EXPECT_EQ(metrics["restored_batch_norms"].size(), std::string(name) == "small_cnn" ? 3u : 0u)
        << name;
    EXPECT_EQ(FindBatchNorms(torch::jit::load(run.context.out_dir + "/model.pt")).size(), 3u)
        << name;
    for (const torch::jit::Module& bn :
         FindBatchNorms(torch::jit::load(run.context.float_model_path))) {
      const torch::Tensor var = bn.attr("running_var").toTensor();
      EXPECT_FALSE(torch::allclose(var, torch::ones_like(var))) << name;
    }
  }
  std::cout << "train loss: folded " << loss["small_cnn"] << ", kept " << loss["small_cnn_bn"]
            << "\n";
  EXPECT_LT(loss["small_cnn"], loss["small_cnn_bn"] + 0.5);
}

// ONNX keeps attributes as float32; torch.nn.BatchNorm2d's eps 1e-5 and momentum 0.1 (exported
// as 0.9) come back as those doubles, as the original model computes with them.
TEST(OnnxImportParity, ReadsEpsAndMomentumAsTheExporterWasGivenThem) {
  const std::vector<torch::jit::Module> norms = FindBatchNorms(Import("small_cnn_bn").module);
  ASSERT_EQ(norms.size(), 3u);
  for (const torch::jit::Module& bn : norms) {
    EXPECT_EQ(bn.attr("eps").toDouble(), 1e-5);
    EXPECT_EQ(bn.attr("momentum").toDouble(), 0.1);
  }
}

// One model brought as TorchScript and as ONNX with its batch norms kept trains to the bit: the
// importer calls the ATen ops the scripted modules call, registers each layer's tensors in
// torch.nn's order, reads eps and momentum as the decimals the exporter was given (momentum 0.1,
// not 1 - 0.9f = 0.10000002, which moved every running statistic), and gradient clipping sums the
// parameters' norms in an order of its own. So a job's accuracy does not depend on the format.
TEST(OnnxImportParity, TrainsExactlyAsTheTorchScriptItWasExportedFrom) {
  std::vector<JobResult> results;
  std::vector<std::vector<torch::Tensor>> tensors;
  for (const char* file : {"small_cnn.pt", "small_cnn_bn.onnx"}) {
    JobRun run = SyntheticJob(file, 2);
    run.spec.set_input_shape("3x32x32");  // read from the ONNX graph; TorchScript does not say
    run.context.float_model_path = run.context.out_dir + "/float.pt";
    absl::StatusOr<JobResult> result = RunJob(run, {});
    ASSERT_TRUE(result.ok()) << file << ": " << result.status();
    results.push_back(*result);
    // The trained model's parameters and floating-point buffers (running statistics), in order;
    // not num_batches_tracked, which the import does not count (it is read only by a momentum of
    // None, which ONNX cannot express).
    tensors.emplace_back();
    torch::jit::Module trained = torch::jit::load(run.context.out_dir + "/model.pt");
    for (const torch::Tensor& p : trained.parameters()) tensors.back().push_back(p);
    for (const torch::Tensor& b : trained.buffers()) {
      if (b.is_floating_point()) tensors.back().push_back(b);
    }
  }
  const JobMetrics& script = results[0].metrics;
  const JobMetrics& onnx = results[1].metrics;
  ASSERT_EQ(script.epochs.size(), onnx.epochs.size());
  for (size_t e = 0; e < script.epochs.size(); ++e) {
    EXPECT_EQ(script.epochs[e].train_loss, onnx.epochs[e].train_loss) << "epoch " << e;
  }
  EXPECT_EQ(script.float_top1, onnx.float_top1);
  EXPECT_EQ(script.quantized_top1, onnx.quantized_top1);
  ASSERT_EQ(tensors[0].size(), tensors[1].size());
  for (size_t i = 0; i < tensors[0].size(); ++i) {
    EXPECT_TRUE(torch::equal(tensors[0][i], tensors[1][i])) << "tensor " << i;
  }
}

}  // namespace
}  // namespace qnet::engine
