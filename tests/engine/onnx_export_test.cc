// Tests for the ONNX exporter: small quantized TorchScript models built here, a scripted
// torchvision resnet18 and the zoo models are exported, then checked in Python (onnx.checker full
// check, ONNX Runtime against the TorchScript archive, INT8 DequantizeLinear weights). The Python
// checks skip when python3 lacks onnx/onnxruntime/torch(vision).
#include "workers/engine/onnx_export.h"

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <torch/script.h>
#include <torch/torch.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

#ifdef QNET_ONNX_TEST_HAVE_ZOO
#include "workers/engine/zoo.h"
#endif

namespace qnet::engine {
namespace {

namespace fs = std::filesystem;
using torch::jit::Module;

// --- model building ---

// A Conv2d/Linear-like module. With levels, its weight is alpha * (random levels) and it carries
// qnet_alpha / qnet_levels like the engine's hard artifact.
// Modules of one model share a compilation unit (so the parent's define() sees the children's
// methods); every module gets a class of its own through name mangling.
using CU = std::shared_ptr<torch::jit::CompilationUnit>;

Module NewModule(const CU& cu, const std::string& cls) {
  return Module(c10::QualifiedName("__torch__.onnxtest." + cls), cu, /*shouldMangle=*/true);
}

Module MakeLayer(const CU& cu, const std::string& cls, std::vector<int64_t> shape, double alpha,
                 const std::vector<double>& levels, int64_t seed) {
  torch::manual_seed(seed);
  Module m = NewModule(cu, cls);
  m.register_attribute("training", c10::BoolType::get(), false);
  torch::Tensor w;
  if (levels.empty()) {
    w = torch::randn(shape) * 0.3;
  } else {
    torch::Tensor table = torch::tensor(levels, torch::kFloat);
    torch::Tensor idx = torch::randint(0, static_cast<int64_t>(levels.size()), shape, torch::kLong);
    w = static_cast<float>(alpha) * table.index_select(0, idx.view(-1)).view(shape);
    m.register_attribute("qnet_alpha", c10::FloatType::get(), alpha);
    m.register_buffer("qnet_levels", table);
  }
  m.register_parameter("weight", w, false);
  m.register_parameter("bias", torch::randn({shape[0]}) * 0.1, false);
  if (shape.size() == 4) {
    m.define(R"(
def forward(self, x):
    return torch.conv2d(x, self.weight, self.bias, [1, 1], [1, 1], [1, 1], 1)
)");
  } else {
    m.define(R"(
def forward(self, x):
    return torch.linear(x, self.weight, self.bias)
)");
  }
  return m;
}

// An activation quantizer in the engine's export form (plain ATen, hard mode).
Module MakeActivationQuantizer(const CU& cu, const std::vector<double>& levels,
                               const std::vector<double>& thresholds, double alpha, double beta) {
  Module m = NewModule(cu, "QnetActivationQuantizer");
  m.register_attribute("training", c10::BoolType::get(), false);
  m.register_parameter("alpha", torch::tensor(alpha, torch::kFloat), false);
  m.register_parameter("beta", torch::tensor(beta, torch::kFloat), false);
  m.register_buffer("levels", torch::tensor(levels, torch::kFloat));
  m.register_buffer("thresholds", torch::tensor(thresholds, torch::kFloat));
  m.register_attribute("temperature", c10::FloatType::get(), 1000.0);
  m.register_attribute("hard", c10::BoolType::get(), true);
  m.define(R"(
def forward(self, x: Tensor) -> Tensor:
    scaled = self.beta * x
    out = torch.zeros_like(x) + self.levels[0]
    for i in range(self.thresholds.size(0)):
        jump = self.levels[i + 1] - self.levels[i]
        if self.hard:
            out = out + jump * torch.ge(scaled, self.thresholds[i]).type_as(x)
        else:
            out = out + jump * torch.sigmoid(self.temperature * (scaled - self.thresholds[i]))
    return self.alpha * out
)");
  return m;
}

struct SmallModelOptions {
  std::vector<double> act_levels = {0, 1, 2, 3};
  std::vector<double> act_thresholds = {0.5, 1.5, 2.5};  // midpoints: QuantizeLinear form
  std::vector<double> conv_levels = {-1, 0, 1};
  std::vector<double> fc_levels = {-4, -2, -1, 0, 1, 2, 4};
  bool view_reshape = false;  // x.view(x.size(0), -1) instead of torch.flatten(x, 1)
};

// conv(float) -> relu -> activation quantizer -> conv(quantized) -> relu -> max_pool -> flatten
// -> linear(quantized); input 1x8x8, 10 classes.
Module MakeSmallModel(const SmallModelOptions& o) {
  auto cu = std::make_shared<torch::jit::CompilationUnit>();
  Module m = NewModule(cu, "Small");
  m.register_attribute("training", c10::BoolType::get(), false);
  m.register_module("conv1", MakeLayer(cu, "Conv2d", {4, 1, 3, 3}, 0, {}, 1));
  m.register_module("act", MakeActivationQuantizer(cu, o.act_levels, o.act_thresholds, 0.4, 2.5));
  m.register_module("conv2", MakeLayer(cu, "Conv2d", {6, 4, 3, 3}, 0.12, o.conv_levels, 2));
  m.register_module("fc", MakeLayer(cu, "Linear", {10, 96}, 0.05, o.fc_levels, 3));
  m.define(absl::StrCat(
      R"(
def forward(self, x):
    x = torch.relu(self.conv1.forward(x))
    x = self.act.forward(x)
    x = torch.relu(self.conv2.forward(x))
    x = torch.max_pool2d(x, [2, 2], [2, 2])
)",
      o.view_reshape ? "    x = x.view(x.size(0), -1)\n" : "    x = torch.flatten(x, 1)\n",
      "    return self.fc.forward(x)\n"));
  m.eval();
  return m;
}

// --- environment ---

class OnnxExportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("qnet_onnx_test_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  // Runs the Python helper; returns its exit status and puts its output in *out.
  static int Python(const std::string& args, std::string* out) {
    const std::string log =
        (fs::temp_directory_path() / ("qnet_onnx_py_" + std::to_string(::getpid()) + ".log"))
            .string();
    const std::string cmd = absl::StrCat(QNET_ONNX_TEST_PYTHON, " -W ignore ", QNET_ONNX_CHECK_PY,
                                         " ", args, " > ", log, " 2>&1");
    const int rc = std::system(cmd.c_str());
    std::ifstream f(log);
    std::stringstream ss;
    ss << f.rdbuf();
    *out = ss.str();
    std::remove(log.c_str());
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
  }

  static bool HavePython() {
    static const bool have = [] {
      std::string out;
      return Python("deps", &out) == 0;
    }();
    return have;
  }

  // Saves `m`, reloads it (like the engine, which exports the saved artifact), exports it and runs
  // the Python check with `flags`.
  void ExportAndCheck(Module m, std::vector<int64_t> chw, const std::string& flags,
                      const std::map<std::string, std::string>& metadata = {}) {
    const std::string ts = (dir_ / "model.pt").string();
    const std::string onnx = (dir_ / "model.onnx").string();
    m.save(ts);
    Module loaded = torch::jit::load(ts);
    absl::Status s = ExportOnnx(loaded, chw, onnx, metadata);
    ASSERT_TRUE(s.ok()) << s;
    ASSERT_TRUE(fs::exists(onnx));
    if (!HavePython()) GTEST_SKIP() << "python3 lacks onnx/onnxruntime/torch";
    std::string out;
    const int rc = Python(
        absl::StrCat("check ", onnx, " ", ts, " ", chw[0], " ", chw[1], " ", chw[2], " ", flags),
        &out);
    EXPECT_EQ(rc, 0) << out;
    std::cout << out;
  }

  fs::path dir_;
};

TEST_F(OnnxExportTest, SmallQuantizedModelUsesQuantizeDequantize) {
  ExportAndCheck(MakeSmallModel({}), {1, 8, 8}, "--min-int8-dq 2 --act-qdq");
}

// What the engine records (the input normalisation) is readable where users run the model.
TEST_F(OnnxExportTest, MetadataReachesOnnxRuntime) {
  ExportAndCheck(MakeSmallModel({}), {1, 8, 8},
                 "--meta qnet_input_mean=[0.286] --meta qnet_input_std=[0.353]",
                 {{"qnet_input_mean", "[0.286]"}, {"qnet_input_std", "[0.353]"}});
}

TEST_F(OnnxExportTest, GeneralLevelSetsAndBatchDependentView) {
  SmallModelOptions o;
  o.act_thresholds = {0.3, 1.4, 2.7};    // not midpoints: exact step form
  o.conv_levels = {-1, 0, 0.3, 1};       // no common step: codes index a level table
  o.fc_levels = {-1.5, -0.5, 0.5, 1.5};  // multiples of 0.5
  o.view_reshape = true;
  ExportAndCheck(MakeSmallModel(o), {1, 8, 8}, "--min-int8-dq 1 --act-steps");
}

TEST_F(OnnxExportTest, TorchvisionResnet18) {
  if (!HavePython()) GTEST_SKIP() << "python3 lacks onnx/onnxruntime/torch";
  const std::string ts = (dir_ / "resnet18.pt").string();
  std::string out;
  if (Python("make-resnet18 " + ts + " --quantize", &out) != 0) {
    GTEST_SKIP() << "torchvision unavailable: " << out;
  }
  ExportAndCheck(torch::jit::load(ts), {3, 32, 32}, "--min-int8-dq 19");
}

TEST_F(OnnxExportTest, TracedModel) {
  if (!HavePython()) GTEST_SKIP() << "python3 lacks onnx/onnxruntime/torch";
  const std::string ts = (dir_ / "traced.pt").string();
  std::string out;
  ASSERT_EQ(Python("make-traced " + ts, &out), 0) << out;
  ExportAndCheck(torch::jit::load(ts), {3, 16, 16}, "");
}

#ifdef QNET_ONNX_TEST_HAVE_ZOO
TEST_F(OnnxExportTest, ZooModels) {
  for (const auto& [name, chw] : std::vector<std::pair<std::string, std::vector<int64_t>>>{
           {"lenet5", {1, 28, 28}},
           {"lenet5", {3, 32, 32}},  // adaptive pooling 6x6 -> 5x5: uneven bins
           {"resnet20", {3, 32, 32}}}) {
    SCOPED_TRACE(name);
    absl::StatusOr<Module> m = MakeZooModel(name, chw[0], 10, 1);
    ASSERT_TRUE(m.ok()) << m.status();
    m->eval();
    ExportAndCheck(*m, chw, "");
  }
}
#endif

TEST_F(OnnxExportTest, ExportIsDeterministicAndLeavesTheModuleAlone) {
  Module m = MakeSmallModel({});
  const torch::Tensor before = m.attr("conv2").toModule().attr("weight").toTensor().clone();
  const std::string a = (dir_ / "a.onnx").string(), b = (dir_ / "b.onnx").string();
  ASSERT_TRUE(ExportOnnx(m, {1, 8, 8}, a).ok());
  ASSERT_TRUE(ExportOnnx(m, {1, 8, 8}, b).ok());
  auto read = [](const std::string& p) {
    std::ifstream f(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(f), {});
  };
  EXPECT_EQ(read(a), read(b));
  EXPECT_FALSE(m.is_training());
  EXPECT_TRUE(torch::equal(before, m.attr("conv2").toModule().attr("weight").toTensor()));
}

TEST_F(OnnxExportTest, UnsupportedOpIsUnimplemented) {
  Module m(c10::QualifiedName("__torch__.onnxtest.Cumsum"));
  m.define(R"(
def forward(self, x):
    return torch.cumsum(torch.flatten(x, 1), 1)
)");
  absl::Status s = ExportOnnx(m, {1, 4, 4}, (dir_ / "m.onnx").string());
  EXPECT_EQ(s.code(), absl::StatusCode::kUnimplemented) << s;
  EXPECT_NE(s.message().find("aten::cumsum"), std::string::npos) << s;
}

TEST_F(OnnxExportTest, DataDependentBranchIsUnimplemented) {
  Module m(c10::QualifiedName("__torch__.onnxtest.Branch"));
  m.define(R"(
def forward(self, x):
    if bool(x.sum() > 0):
        return torch.flatten(x, 1)
    return torch.flatten(torch.relu(x), 1)
)");
  absl::Status s = ExportOnnx(m, {1, 4, 4}, (dir_ / "m.onnx").string());
  EXPECT_EQ(s.code(), absl::StatusCode::kUnimplemented) << s;
}

TEST_F(OnnxExportTest, BadArguments) {
  Module m = MakeSmallModel({});
  EXPECT_EQ(ExportOnnx(m, {1, 8, 8}, (dir_ / "missing" / "m.onnx").string()).code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(ExportOnnx(m, {8, 8}, (dir_ / "m.onnx").string()).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ExportOnnx(m, {1, 0, 8}, (dir_ / "m.onnx").string()).code(),
            absl::StatusCode::kInvalidArgument);
  // The model's linear layer expects 96 features; a 3x16x16 input does not fit it.
  absl::Status s = ExportOnnx(m, {3, 16, 16}, (dir_ / "m.onnx").string());
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_FALSE(fs::exists(dir_ / "m.onnx"));
}

TEST_F(OnnxExportTest, SoftActivationQuantizerIsRejected) {
  Module m = MakeSmallModel({});
  m.attr("act").toModule().setattr("hard", false);
  absl::Status s = ExportOnnx(m, {1, 8, 8}, (dir_ / "m.onnx").string());
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
}

}  // namespace
}  // namespace qnet::engine
