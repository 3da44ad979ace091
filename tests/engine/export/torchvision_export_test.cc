// Bring your own model: torchvision models, scripted or traced in Python, go through the engine's
// transform and every exporter; the artifacts are then checked in stock PyTorch and ONNX Runtime
// by torchvision_check.py (model.pt reproduces the engine's hard model and holds at most n+1
// values per quantized weight; model.onnx passes the full checker, agrees with model.pt and
// stores weights as 4-bit codes at 4 bits or fewer) and here (model.qnet within 5% of its ideal
// size, codes at their bit width plus the raw tensors; model.onnx near the same at 4 or 8 bits
// per weight, and far below the float model's ONNX file). No training: activation quantizers are
// calibrated on random batches, then everything is hard.
//
// QNET_TORCHVISION_CASES="vgg11_bn:script:2,alexnet:trace:4" replaces the list of cases
// (FAMILY:MODE:BITS, any torchvision.models builder) for a wider sweep.
#include <sys/wait.h>
#include <unistd.h>
#include <optional>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <ostream>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <torch/script.h>
#include <torch/torch.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "workers/engine/export/export.h"
#include "workers/engine/export/onnx/onnx_export.h"
#include "workers/engine/quantization/levels.h"
#include "workers/engine/training/trainer.h"
#include "workers/engine/transform/transform.h"

namespace qnet::engine {
namespace {

namespace fs = std::filesystem;

struct Case {
  std::string family, mode;
  int bits = 2;
};

std::string CaseName(const Case& c) { return absl::StrCat(c.family, "_", c.mode, "_w", c.bits); }
void PrintTo(const Case& c, std::ostream* os) { *os << CaseName(c); }

// One case per family with an op of its own, scripted and traced, 2 and 4 bits. SqueezeNet runs at
// 4 bits: at 2 its random weights give all-zero logits, which would make every comparison vacuous.
std::vector<Case> Cases() {
  std::vector<Case> cases;
  const char* env = std::getenv("QNET_TORCHVISION_CASES");
  const std::string list = env != nullptr && *env != '\0'
                               ? env
                               : "resnet18:script:2,mobilenet_v2:trace:2,"
                                 "mobilenet_v3_small:script:4,efficientnet_b0:script:2,"
                                 "shufflenet_v2_x0_5:trace:4,convnext_tiny:script:2,"
                                 "squeezenet1_1:script:4,googlenet:trace:2,regnet_x_400mf:trace:4,"
                                 "densenet121:script:4";
  for (absl::string_view item : absl::StrSplit(list, ',', absl::SkipEmpty())) {
    const std::vector<std::string> parts = absl::StrSplit(item, ':');
    if (parts.size() != 3) {
      ADD_FAILURE() << "bad case " << item << " (FAMILY:MODE:BITS)";
      continue;
    }
    cases.push_back({parts[0], parts[1], std::stoi(parts[2])});
  }
  return cases;
}

// Runs torchvision_check.py with `args`; its exit status, its output in *out.
int Python(const std::string& args, std::string* out) {
  const fs::path log = fs::temp_directory_path() / ("qnet_tv_py_" + std::to_string(::getpid()));
  const std::string cmd = absl::StrCat(QNET_TEST_PYTHON, " -W ignore ", QNET_TORCHVISION_CHECK_PY,
                                       " ", args, " > ", log.string(), " 2>&1");
  const int rc = std::system(cmd.c_str());
  std::ifstream f(log);
  std::stringstream ss;
  ss << f.rdbuf();
  *out = ss.str();
  fs::remove(log);
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

void WriteFloats(const torch::Tensor& t, const fs::path& path) {
  const torch::Tensor c = t.detach().to(torch::kCPU, torch::kFloat).contiguous();
  std::ofstream(path, std::ios::binary)
      .write(static_cast<const char*>(c.data_ptr()), static_cast<std::streamsize>(c.nbytes()));
}

// Calibrates every activation quantizer on random batches the way the trainer does on training
// batches (signed levels where the input goes clearly negative), then switches the model hard.
void CalibrateAndHarden(QuantizedModel& q, int64_t size) {
  Recipe recipe;
  recipe.calibration_batches = 2;
  ASSERT_TRUE(CalibrateActivations(q, recipe, [&]() -> std::optional<torch::Tensor> {
                return torch::randn({8, 3, size, size});
              }).ok());
  q.SetActivationsEnabled(true);
  q.SetHard(true);
  q.RefreshWeights();
}

class TorchvisionExportTest : public ::testing::TestWithParam<Case> {
 protected:
  void SetUp() override {
    dir_ =
        fs::temp_directory_path() / absl::StrCat("qnet_tv_", ::getpid(), "_", CaseName(GetParam()));
    fs::create_directories(dir_);
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  fs::path dir_;
};

// Bytes of the tensors ONNX stores: quantized weights at 4 bits (8 above 4 bits), the rest raw.
double OnnxIdealBytes(const PackedModel& packed) {
  double bytes = 0;
  for (const PackedEntry& e : packed.entries) {
    int64_t numel = 1;
    for (int64_t d : e.shape) numel *= d;
    if (e.quantized) {
      bytes += static_cast<double>(numel * (e.bits <= 4 ? 4 : 8)) / 8;
    } else if (e.dtype == "float32") {
      bytes += static_cast<double>(e.bytes);
    }
  }
  return bytes;
}

TEST_P(TorchvisionExportTest, ArtifactsReproduceTheEngine) {
  const Case& c = GetParam();
  const int64_t size = c.family == "alexnet" ? 64 : 32;
  std::string out;
  ASSERT_EQ(Python(absl::StrCat("make ", dir_.string(), " ", c.family, ":", c.mode), &out), 0)
      << out;
  torch::manual_seed(5);
  const torch::jit::Module float_model =
      torch::jit::load((dir_ / (c.family + "_" + c.mode + ".pt")).string());
  QuantSpec spec;
  spec.weight_levels = *WeightLevels(c.bits);
  spec.activation_levels = *ActivationLevels(c.bits);
  spec.signed_activation_levels = *WeightLevels(c.bits, WeightLevelScheme::kUniform);
  absl::StatusOr<std::unique_ptr<QuantizedModel>> q =
      QuantizedModel::Create(float_model.clone(), spec);
  ASSERT_TRUE(q.ok()) << q.status();
  ASSERT_FALSE((*q)->layers().empty());
  ASSERT_NO_FATAL_FAILURE(CalibrateAndHarden(**q, size));

  const torch::Tensor x = torch::randn({4, 3, size, size});
  torch::Tensor engine;
  {
    torch::NoGradGuard no_grad;
    engine = (*q)->Forward(x);
  }
  absl::StatusOr<torch::jit::Module> hard = BuildHardModule(float_model, **q);
  ASSERT_TRUE(hard.ok()) << hard.status();
  ASSERT_TRUE(SaveModule(*hard, (dir_ / "model.pt").string()).ok());
  absl::Status onnx = ExportOnnx(torch::jit::load((dir_ / "model.pt").string()), {3, size, size},
                                 (dir_ / "model.onnx").string());
  ASSERT_TRUE(onnx.ok()) << onnx;

  // model.qnet: codes at their bit width plus everything else raw, within 5% of that ideal.
  absl::StatusOr<PackedModel> packed = WritePackedModel(*hard, **q, (dir_ / "model.qnet").string());
  ASSERT_TRUE(packed.ok()) << packed.status();
  double ideal = 0;
  for (const PackedEntry& e : packed->entries) {
    int64_t numel = 1;
    for (int64_t d : e.shape) numel *= d;
    ideal += e.quantized ? static_cast<double>(numel * e.bits) / 8 : static_cast<double>(e.bytes);
  }
  EXPECT_LE(static_cast<double>(packed->file_bytes), 1.05 * ideal)
      << packed->file_bytes << " bytes against the ideal " << ideal;

  // model.onnx follows the bit width: 4 bits per quantized weight at 4 bits or fewer. The graph
  // itself (nodes and their value names) adds the rest: 0.4% on ResNet-18, 25% on ShuffleNet v2
  // x0.5, whose 521 nodes hold only 350k weights.
  const double onnx_ideal = OnnxIdealBytes(*packed);
  const auto onnx_bytes = static_cast<double>(fs::file_size(dir_ / "model.onnx"));
  EXPECT_LE(onnx_bytes, 1.3 * onnx_ideal) << onnx_bytes << " bytes against " << onnx_ideal;
  if (c.family == "resnet18") {  // and against the float model's ONNX export
    ASSERT_TRUE(ExportOnnx(float_model, {3, size, size}, (dir_ / "float.onnx").string()).ok());
    const auto float_bytes = static_cast<double>(fs::file_size(dir_ / "float.onnx"));
    EXPECT_LE(onnx_bytes, (c.bits <= 4 ? 0.14 : 0.27) * float_bytes);
    std::cout << CaseName(c) << ": float model.onnx " << float_bytes << " bytes\n";
  }

  WriteFloats(x, dir_ / "input.bin");
  WriteFloats(engine, dir_ / "engine.bin");
  std::ofstream(dir_ / "shape.txt")
      << x.size(0) << " 3 " << size << " " << size << " " << engine.size(1) << "\n";
  EXPECT_EQ(Python(absl::StrCat("check ", dir_.string(), " ", c.bits), &out), 0) << out;
  std::cout << CaseName(c) << ": model.qnet " << packed->file_bytes << " bytes (ideal "
            << static_cast<int64_t>(ideal) << "), model.onnx ideal "
            << static_cast<int64_t>(onnx_ideal) << "; " << out;
}

INSTANTIATE_TEST_SUITE_P(Families, TorchvisionExportTest, ::testing::ValuesIn(Cases()),
                         [](const ::testing::TestParamInfo<Case>& info) {
                           return CaseName(info.param);
                         });

}  // namespace
}  // namespace qnet::engine
