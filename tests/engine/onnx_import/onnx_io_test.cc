// The ONNX importer's inputs, outputs and files (make_onnx_io_models.py, which the
// onnx_io_models ctest fixture runs, writes the models): the exported model.onnx of a job whose
// model was ONNX keeps the original graph's input and output names (onnx_io_check.py reads it
// with the onnx package and runs it in ONNX Runtime); a graph declaring NHWC input, as tf2onnx
// exports, computes what ONNX Runtime does and trains through a job; weights saved as external
// data next to the model are read.
#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <torch/script.h>

#include "absl/strings/str_cat.h"
#include "tests/engine/onnx_import/onnx_fixture_files.h"
#include "tests/engine/short_job.h"
#include "tests/engine/synthetic_idx.h"
#include "workers/engine/export/onnx/onnx_export.h"
#include "workers/engine/job_runner.h"
#include "workers/engine/model_source/model_source.h"
#include "workers/engine/model_source/onnx/importer.h"
#include "workers/engine/model_source/onnx/onnx_file.h"

namespace qnet::engine {
namespace {

namespace fs = std::filesystem;
using onnx_import::ImportedModel;

std::string Fixture(const std::string& name) {
  return std::string(QNET_ONNX_IO_FIXTURES) + "/" + name;
}

ImportedModel Import(const std::string& file) { return testing::ImportOnnxFixture(Fixture(file)); }

// The largest difference between the imported model's logits on `nchw` and ONNX Runtime's.
double DistanceToOnnxRuntime(const std::string& name, const torch::Tensor& nchw) {
  ImportedModel m = Import(name + ".onnx");
  m.module.eval();
  torch::NoGradGuard no_grad;
  const torch::Tensor y = m.module.forward({nchw}).toTensor();
  const torch::Tensor want = testing::ReadFloats(Fixture(name + ".expected.bin"), {2, 10});
  EXPECT_EQ(y.sizes(), want.sizes());
  return y.sizes() == want.sizes() ? (y - want).abs().max().item<double>() : 1e9;
}

// W4A4 over 20 synthetic 28x28 grey images in batches of 4, one epoch, no pre-training.
absl::StatusOr<JobResult> RunShortW4A4Job(const std::string& model, const std::string& out_dir) {
  JobRun run = testing::ShortJob(
      model, 4, testing::WriteSyntheticIdx(testing::ProcessTempDir("io_idx"), 20, 8), "idx",
      out_dir);
  run.spec.add_export_formats("onnx");
  return RunJob(run, {});
}

// onnx_io_check.py on `model`: empty when it passes, else what it printed.
std::string CheckInOnnxRuntime(const std::string& model, const std::string& input,
                               const std::string& output, const std::string& chw) {
  const fs::path log = testing::ProcessTempDir("onnx_io_check.log");
  const std::string cmd =
      absl::StrCat(QNET_TEST_PYTHON, " -W ignore ", QNET_ONNX_IO_CHECK_PY, " ", model, " '", input,
                   "' '", output, "' ", chw, " 10 > ", log.string(), " 2>&1");
  const int rc = std::system(cmd.c_str());
  std::stringstream printed;
  printed << std::ifstream(log).rdbuf();
  if (WIFEXITED(rc) && WEXITSTATUS(rc) == 0) return "";
  return absl::StrCat("onnx_io_check.py failed (", rc, "): ", printed.str());
}

TEST(OnnxIo, AnImportedGraphDeclaresItsInputAndOutputNames) {
  absl::StatusOr<std::unique_ptr<OpenedModel>> onnx = OpenModel(Fixture("named.onnx"));
  ASSERT_TRUE(onnx.ok()) << onnx.status();
  EXPECT_EQ((*onnx)->DeclaredIoNames().input, "pixel_values");
  EXPECT_EQ((*onnx)->DeclaredIoNames().output, "logits");
  // Any other model keeps the exporter's names.
  absl::StatusOr<std::unique_ptr<OpenedModel>> zoo = OpenModel("zoo:lenet5");
  ASSERT_TRUE(zoo.ok()) << zoo.status();
  EXPECT_EQ((*zoo)->DeclaredIoNames().input, "input");
  EXPECT_EQ((*zoo)->DeclaredIoNames().output, "output");
}

TEST(OnnxIo, TheExportedModelKeepsTheOriginalGraphsNames) {
  const std::string out = testing::ProcessTempDir("onnx_io_named");
  absl::StatusOr<JobResult> result = RunShortW4A4Job(Fixture("named.onnx"), out);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(CheckInOnnxRuntime(out + "/model.onnx", "pixel_values", "logits", "1x28x28"), "");
}

TEST(OnnxIo, TheExporterNamesTheGraphAsAsked) {
  torch::jit::Module m("M");
  m.define("def forward(self, x: Tensor) -> Tensor:\n    return torch.relu(x).flatten(1)\n");
  const std::string dir = testing::ProcessTempDir("onnx_io_names");
  fs::create_directories(dir);
  ASSERT_TRUE(ExportOnnx(m, {1, 2, 2}, dir + "/m.onnx", {}, {"x:0", "y:0"}).ok());
  absl::StatusOr<onnx_import::OnnxFile> file = onnx_import::ReadOnnxFile(dir + "/m.onnx");
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ(file->model.graph().input(0).name(), "x:0");
  EXPECT_EQ(file->model.graph().output(0).name(), "y:0");
  // Two values of one graph cannot share a name.
  absl::Status same = ExportOnnx(m, {1, 2, 2}, dir + "/same.onnx", {}, {"x", "x"});
  EXPECT_EQ(same.code(), absl::StatusCode::kInvalidArgument) << same;
}

TEST(OnnxIo, AnNhwcGraphMatchesOnnxRuntimeFedNchw) {
  ImportedModel m = Import("nhwc.onnx");
  ASSERT_TRUE(m.input_shape.has_value());
  EXPECT_EQ(*m.input_shape, (std::vector<int64_t>{1, 28, 28}));
  // ONNX Runtime was fed [N, H, W, C]; the job's data path feeds the same images as [N, C, H, W].
  const torch::Tensor nhwc = testing::ReadFloats(Fixture("nhwc.input.bin"), {2, 28, 28, 1});
  EXPECT_LT(DistanceToOnnxRuntime("nhwc", nhwc.permute({0, 3, 1, 2}).contiguous()), 1e-4);
}

TEST(OnnxIo, AnNhwcGraphTrainsThroughAJob) {
  const std::string out = testing::ProcessTempDir("onnx_io_nhwc");
  absl::StatusOr<JobResult> result = RunShortW4A4Job(Fixture("nhwc.onnx"), out);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->metrics.effective_spec.input_shape(), "1x28x28");
  // The artifact takes the job's NCHW batches, under the original input's name.
  EXPECT_EQ(CheckInOnnxRuntime(out + "/model.onnx", "input_1", "dense:0", "1x28x28"), "");
}

TEST(OnnxIo, ExternalDataNextToTheModelIsRead) {
  const torch::Tensor x = testing::ReadFloats(Fixture("external.input.bin"), {2, 1, 28, 28});
  EXPECT_LT(DistanceToOnnxRuntime("external", x), 1e-4);
}

}  // namespace
}  // namespace qnet::engine
