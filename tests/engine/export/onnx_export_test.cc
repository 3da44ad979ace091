// Tests for the ONNX exporter: small quantized TorchScript models built here, a scripted
// torchvision resnet18 and the zoo models are exported, then checked in Python (onnx.checker full
// check, ONNX Runtime against the TorchScript archive, low-bit DequantizeLinear weights). The
// Python checks fail when python3 lacks onnx/onnxruntime/torch(vision).
#include "workers/engine/export/onnx/onnx_export.h"

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/script.h>
#include <torch/torch.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "qnet_onnx.pb.h"

#include "workers/engine/zoo/zoo.h"

namespace qnet::engine {
namespace {

namespace fs = std::filesystem;
namespace pb = ::qnet_onnx;
using ::testing::HasSubstr;
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

// --- reading the exported graph ---

std::vector<std::string> OpTypes(const pb::ModelProto& m) {
  std::vector<std::string> ops;
  for (const pb::NodeProto& n : m.graph().node()) ops.push_back(n.op_type());
  return ops;
}

int Count(const pb::ModelProto& m, const std::string& op) {
  const std::vector<std::string> ops = OpTypes(m);
  return static_cast<int>(std::count(ops.begin(), ops.end(), op));
}

const pb::TensorProto* Initializer(const pb::ModelProto& m, const std::string& name) {
  for (const pb::TensorProto& t : m.graph().initializer()) {
    if (t.name() == name) return &t;
  }
  return nullptr;
}

// The values of the initializer `name` (raw_data, as the exporter writes them) as doubles.
std::vector<double> Values(const pb::ModelProto& m, const std::string& name) {
  std::vector<double> out;
  const pb::TensorProto* t = Initializer(m, name);
  if (t == nullptr) {
    ADD_FAILURE() << "no initializer " << name;
    return out;
  }
  const std::string& raw = t->raw_data();
  int64_t numel = 1;
  for (int64_t d : t->dims()) numel *= d;
  if (t->data_type() == pb::TensorProto::INT8) {
    for (char c : raw) out.push_back(static_cast<int8_t>(c));
  } else if (t->data_type() == pb::TensorProto::INT4 || t->data_type() == pb::TensorProto::UINT4) {
    // Two per byte, the first in the low nibble; INT4 is two's complement.
    for (int64_t i = 0; i < numel; ++i) {
      const int nibble = (static_cast<unsigned char>(raw[i / 2]) >> (i % 2 == 0 ? 0 : 4)) & 0xf;
      out.push_back(t->data_type() == pb::TensorProto::INT4 && nibble > 7 ? nibble - 16 : nibble);
    }
  } else if (t->data_type() == pb::TensorProto::FLOAT) {
    for (size_t i = 0; i + sizeof(float) <= raw.size(); i += sizeof(float)) {
      float f;
      std::memcpy(&f, raw.data() + i, sizeof f);
      out.push_back(f);
    }
  }
  return out;
}

// "N,1,8,8": a value's dims, symbolic ones by name.
std::string Dims(const pb::ValueInfoProto& v) {
  std::vector<std::string> dims;
  for (const auto& d : v.type().tensor_type().shape().dim()) {
    dims.push_back(d.has_dim_param() ? d.dim_param() : std::to_string(d.dim_value()));
  }
  return absl::StrJoin(dims, ",");
}

std::map<std::string, std::string> Metadata(const pb::ModelProto& m) {
  std::map<std::string, std::string> out;
  for (const auto& p : m.metadata_props()) out[p.key()] = p.value();
  return out;
}

// The weight DequantizeLinear nodes: those whose codes are an initializer of `type`.
std::vector<const pb::NodeProto*> WeightDequantizers(const pb::ModelProto& m,
                                                     pb::TensorProto::DataType type) {
  std::vector<const pb::NodeProto*> out;
  for (const pb::NodeProto& n : m.graph().node()) {
    const pb::TensorProto* codes =
        n.op_type() == "DequantizeLinear" ? Initializer(m, n.input(0)) : nullptr;
    if (codes != nullptr && codes->data_type() == type) out.push_back(&n);
  }
  return out;
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

  // Makes a TorchScript model in Python (`onnx_check.py COMMAND OUT.pt EXTRA`) and loads it.
  Module PythonModel(const std::string& command, const std::string& extra = "") {
    const std::string ts = (dir_ / "made.pt").string();
    std::string out;
    const int rc = Python(absl::StrCat(command, " ", ts, " ", extra), &out);
    EXPECT_EQ(rc, 0) << out;
    return torch::jit::load(ts);
  }

  // Saves `m`, reloads it (like the engine, which exports the saved artifact), exports it, reads
  // the ONNX back into *model and runs the Python check with `flags`.
  void ExportAndCheck(Module m, std::vector<int64_t> chw, const std::string& flags,
                      pb::ModelProto* model,
                      const std::map<std::string, std::string>& metadata = {}) {
    const std::string ts = (dir_ / "model.pt").string();
    const std::string onnx = (dir_ / "model.onnx").string();
    m.save(ts);
    Module loaded = torch::jit::load(ts);
    absl::Status s = ExportOnnx(loaded, chw, onnx, metadata);
    ASSERT_TRUE(s.ok()) << s;
    std::ifstream f(onnx, std::ios::binary);
    ASSERT_TRUE(model->ParseFromString(std::string(std::istreambuf_iterator<char>(f), {})));
    std::string out;
    const int rc = Python(
        absl::StrCat("check ", onnx, " ", ts, " ", chw[0], " ", chw[1], " ", chw[2], " ", flags),
        &out);
    EXPECT_EQ(rc, 0) << out;
    std::cout << out;
  }

  // Exports the Python-made model of one converter family; every op in `ops` must be in the
  // graph, and ONNX Runtime must compute what TorchScript does.
  void CheckFamily(const std::string& family, const std::set<std::string>& ops) {
    pb::ModelProto model;
    ASSERT_NO_FATAL_FAILURE(
        ExportAndCheck(PythonModel("make-family " + family), {3, 8, 8}, "--no-top1", &model));
    const std::vector<std::string> have = OpTypes(model);
    for (const std::string& op : ops) {
      EXPECT_NE(std::find(have.begin(), have.end(), op), have.end())
          << op << " missing from " << absl::StrJoin(have, " ");
    }
  }

  fs::path dir_;
};

TEST_F(OnnxExportTest, SmallQuantizedModelUsesQuantizeDequantize) {
  pb::ModelProto model;
  ASSERT_NO_FATAL_FAILURE(
      ExportAndCheck(MakeSmallModel({}), {1, 8, 8}, "--min-code-dq 2 --act-qdq", &model));
  // conv1, relu, the activation quantizer (scale, clip, QDQ), conv2 from INT4 codes, relu,
  // pooling, flatten, fc from INT4 codes.
  EXPECT_THAT(OpTypes(model),
              ::testing::ElementsAre("Conv", "Relu", "Mul", "Clip", "QuantizeLinear",
                                     "DequantizeLinear", "DequantizeLinear", "Conv", "Relu",
                                     "MaxPool", "Flatten", "DequantizeLinear", "Gemm", "Identity"));
  ASSERT_EQ(model.opset_import_size(), 1);
  EXPECT_EQ(model.opset_import(0).domain(), "");
  EXPECT_EQ(model.opset_import(0).version(), 21);
  EXPECT_EQ(model.ir_version(), 10);
  ASSERT_EQ(model.graph().input_size(), 1);
  EXPECT_EQ(model.graph().input(0).name(), "input");
  EXPECT_EQ(Dims(model.graph().input(0)), "N,1,8,8");
  ASSERT_EQ(model.graph().output_size(), 1);
  EXPECT_EQ(model.graph().output(0).name(), "output");
  EXPECT_EQ(Dims(model.graph().output(0)), "N,10");
  EXPECT_TRUE(Metadata(model).empty());

  // The weights are their level codes with scale alpha (the levels are integers), 4 bits each.
  EXPECT_TRUE(WeightDequantizers(model, pb::TensorProto::INT8).empty());
  const std::vector<const pb::NodeProto*> dq = WeightDequantizers(model, pb::TensorProto::INT4);
  ASSERT_EQ(dq.size(), 2u);
  const std::vector<std::pair<std::set<double>, double>> want = {{{-1, 0, 1}, 0.12},
                                                                 {{-4, -2, -1, 0, 1, 2, 4}, 0.05}};
  for (size_t i = 0; i < dq.size(); ++i) {
    const std::vector<double> codes = Values(model, dq[i]->input(0));
    EXPECT_GT(codes.size(), 50u);
    for (double c : codes) EXPECT_EQ(want[i].first.count(c), 1u) << "code " << c;
    const std::vector<double> scale = Values(model, dq[i]->input(1));
    ASSERT_EQ(scale.size(), 1u);
    EXPECT_NEAR(scale[0], want[i].second, 1e-7);
  }
}

// What the engine records (the input normalisation) is readable where users run the model.
TEST_F(OnnxExportTest, MetadataReachesOnnxRuntime) {
  const std::map<std::string, std::string> metadata = {{"qnet_input_mean", "[0.286]"},
                                                       {"qnet_input_std", "[0.353]"}};
  pb::ModelProto model;
  ASSERT_NO_FATAL_FAILURE(ExportAndCheck(
      MakeSmallModel({}), {1, 8, 8}, "--meta qnet_input_mean=[0.286] --meta qnet_input_std=[0.353]",
      &model, metadata));
  EXPECT_EQ(Metadata(model), metadata);
}

TEST_F(OnnxExportTest, GeneralLevelSetsAndBatchDependentView) {
  SmallModelOptions o;
  o.act_thresholds = {0.3, 1.4, 2.7};    // not midpoints: exact step form
  o.conv_levels = {-1, 0, 0.3, 1};       // no common step: codes index a level table
  o.fc_levels = {-1.5, -0.5, 0.5, 1.5};  // multiples of 0.5
  o.view_reshape = true;
  pb::ModelProto model;
  ASSERT_NO_FATAL_FAILURE(
      ExportAndCheck(MakeSmallModel(o), {1, 8, 8}, "--min-code-dq 1 --act-steps", &model));
  // The activation quantizer: the exact level index from comparisons, then alpha * d * index
  // through a lossless QDQ; conv2: UINT4 level indices gathered from its level values.
  EXPECT_THAT(OpTypes(model),
              ::testing::ElementsAre("Conv", "Relu", "Mul", "Unsqueeze", "GreaterOrEqual", "Cast",
                                     "ReduceSum", "Mul", "QuantizeLinear", "DequantizeLinear",
                                     "Cast", "Gather", "Conv", "Relu", "MaxPool", "Reshape",
                                     "DequantizeLinear", "Gemm", "Identity"));
  EXPECT_EQ(Count(model, "QuantizeLinear"), 1);
  // conv2: UINT4 indices into the table alpha * levels.
  for (const pb::NodeProto& n : model.graph().node()) {
    if (n.op_type() == "Cast" && Initializer(model, n.input(0)) != nullptr) {
      EXPECT_EQ(Initializer(model, n.input(0))->data_type(), pb::TensorProto::UINT4);
      for (double c : Values(model, n.input(0))) EXPECT_TRUE(c >= 0 && c <= 3) << "index " << c;
    }
    if (n.op_type() != "Gather") continue;
    const std::vector<double> table = Values(model, n.input(0));
    ASSERT_EQ(table.size(), 4u);
    for (size_t i = 0; i < table.size(); ++i) {
      EXPECT_NEAR(table[i], 0.12 * o.conv_levels[i], 1e-7);
    }
  }
  // fc: codes in steps of 0.5, scale alpha * 0.5.
  const std::vector<const pb::NodeProto*> dq = WeightDequantizers(model, pb::TensorProto::INT4);
  ASSERT_EQ(dq.size(), 1u);
  for (double c : Values(model, dq[0]->input(0))) {
    EXPECT_TRUE(c == -3 || c == -1 || c == 1 || c == 3) << "code " << c;
  }
  const std::vector<double> scale = Values(model, dq[0]->input(1));
  ASSERT_EQ(scale.size(), 1u);
  EXPECT_NEAR(scale[0], 0.025, 1e-7);
}

TEST_F(OnnxExportTest, TorchvisionResnet18) {
  pb::ModelProto model;
  ASSERT_NO_FATAL_FAILURE(ExportAndCheck(PythonModel("make-resnet18", "--quantize"), {3, 32, 32},
                                         "--min-code-dq 19", &model));
  // Every conv but the first has ternary codes, 4 bits each.
  EXPECT_EQ(WeightDequantizers(model, pb::TensorProto::INT4).size(), 19u);
  EXPECT_EQ(Count(model, "Conv"), 20);
}

TEST_F(OnnxExportTest, TracedModel) {
  pb::ModelProto model;
  ASSERT_NO_FATAL_FAILURE(ExportAndCheck(PythonModel("make-traced"), {3, 16, 16}, "", &model));
  EXPECT_EQ(Dims(model.graph().output(0)), "N,10");
}

TEST_F(OnnxExportTest, ZooModels) {
  for (const auto& [name, chw] : std::vector<std::pair<std::string, std::vector<int64_t>>>{
           {"lenet5", {1, 28, 28}},
           {"lenet5", {3, 32, 32}},  // adaptive pooling 6x6 -> 5x5: uneven bins
           {"resnet20", {3, 32, 32}}}) {
    SCOPED_TRACE(name);
    absl::StatusOr<Module> m = MakeZooModel(name, chw[0], 10, 1);
    ASSERT_TRUE(m.ok()) << m.status();
    m->eval();
    pb::ModelProto model;
    ASSERT_NO_FATAL_FAILURE(ExportAndCheck(*m, chw, "", &model));
    EXPECT_EQ(Dims(model.graph().output(0)), "N,10");
  }
}

// One test per converter family: each op's ONNX form, and ONNX Runtime agrees with TorchScript.
TEST_F(OnnxExportTest, ActivationConverters) {
  CheckFamily("activations", {"Relu", "Sigmoid",   "Tanh",       "LeakyRelu",  "Elu", "HardSigmoid",
                              "Erf",  "HardSwish", "Clip",       "Sqrt",       "Exp", "Log",
                              "Abs",  "Sin",       "Cos",        "Reciprocal", "Neg", "Floor",
                              "Ceil", "Identity",  "LogSoftmax", "Softmax"});
}

TEST_F(OnnxExportTest, ConvLinearConverters) {
  CheckFamily("conv-linear",
              {"Conv", "BatchNormalization", "LayerNormalization", "MatMul", "Add", "Gemm"});
}

TEST_F(OnnxExportTest, PoolingConverters) {
  CheckFamily("pooling", {"MaxPool", "AveragePool", "GlobalAveragePool", "Concat"});
}

TEST_F(OnnxExportTest, ShapeConverters) {
  CheckFamily("shape",
              {"Transpose", "Reshape", "Concat", "Unsqueeze", "Squeeze", "Cast", "Identity"});
}

TEST_F(OnnxExportTest, IndexingConverters) {
  CheckFamily("indexing", {"Split", "Squeeze", "Gather", "Slice", "Concat"});
}

TEST_F(OnnxExportTest, MathConverters) {
  CheckFamily("math", {"Add", "Sub", "Mul", "Div", "ReduceMean", "ReduceSum", "Relu"});
}

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

// An op without a converter fails the export, naming the op, the node and where it is.
TEST_F(OnnxExportTest, OpWithoutConverterFailsNamingOpAndNode) {
  auto cu = std::make_shared<torch::jit::CompilationUnit>();
  Module inner = NewModule(cu, "Inner");
  inner.define(R"(
def forward(self, x):
    return torch.cumsum(torch.flatten(x, 1), 1)
)");
  Module m = NewModule(cu, "Outer");
  m.register_module("inner", inner);
  m.define(R"(
def forward(self, x):
    return self.inner.forward(torch.relu(x))
)");
  const fs::path path = dir_ / "m.onnx";
  absl::Status s = ExportOnnx(m, {1, 4, 4}, path.string());
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_THAT(s.message(), HasSubstr("no converter for aten::cumsum")) << s;
  EXPECT_THAT(s.message(), HasSubstr("= aten::cumsum(%")) << s;  // the node's IR
  EXPECT_THAT(s.message(), HasSubstr("in inner.forward")) << s;
  EXPECT_THAT(s.message(), HasSubstr("`return torch.cumsum(torch.flatten(x, 1), 1)`")) << s;
  EXPECT_FALSE(fs::exists(path));
}

// A converter that meets a variant it cannot write says which, for which node.
TEST_F(OnnxExportTest, ConverterRefusalNamesOpAndNode) {
  Module m(c10::QualifiedName("__torch__.onnxtest.SoftmaxDtype"));
  m.define(R"(
def forward(self, x):
    return torch.softmax(torch.flatten(x, 1), 1, 7)  # dtype float64
)");
  absl::Status s = ExportOnnx(m, {1, 4, 4}, (dir_ / "m.onnx").string());
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_THAT(s.message(), HasSubstr("does not support aten::softmax: a dtype argument")) << s;
  EXPECT_THAT(s.message(), HasSubstr("= aten::softmax(%")) << s;
  EXPECT_THAT(s.message(), HasSubstr("in forward")) << s;
}

TEST_F(OnnxExportTest, BatchDependentBranchIsRefused) {
  Module m(c10::QualifiedName("__torch__.onnxtest.Branch"));
  m.define(R"(
def forward(self, x):
    if x.size(0) > 2:
        return torch.flatten(x, 1)
    return torch.flatten(torch.relu(x), 1)
)");
  absl::Status s = ExportOnnx(m, {1, 4, 4}, (dir_ / "m.onnx").string());
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_THAT(s.message(),
              HasSubstr("prim::If: a branch that depends on the batch size or the input data"))
      << s;
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
  EXPECT_THAT(s.message(), HasSubstr("soft mode")) << s;
}

}  // namespace
}  // namespace qnet::engine
