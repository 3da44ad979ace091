// Tests for the built-in zoo models: shapes, trainability, structure the model transform relies
// on, determinism, and that saved archives load in LibTorch and in stock PyTorch.
#include "workers/engine/zoo/zoo.h"

#include <stdlib.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <torch/csrc/jit/passes/inliner.h>
#include <torch/script.h>
#include <torch/torch.h>

namespace qnet::engine {
namespace {

namespace fs = std::filesystem;
using torch::jit::Module;

Module Make(const std::string& name, int64_t in_channels, uint64_t seed = 1,
            int64_t input_size = 0) {
  absl::StatusOr<Module> m = MakeZooModel(name, in_channels, 10, seed, input_size);
  EXPECT_TRUE(m.ok()) << m.status();
  return m.ok() ? *m : Module();
}

torch::Tensor Forward(Module& m, const torch::Tensor& x) { return m.forward({x}).toTensor(); }

struct Case {
  std::string name;
  int64_t channels, side, input_size;
};

const std::vector<Case>& Cases() {
  static const auto* const kCases = new std::vector<Case>{
      {"lenet5", 1, 28, 0},  {"lenet5", 3, 32, 0},   {"lenet5", 1, 28, 28},
      {"lenet5", 3, 32, 32}, {"resnet20", 1, 28, 0}, {"resnet20", 3, 32, 0},
  };
  return *kCases;
}

TEST(ZooTest, ForwardShapes) {
  for (const Case& c : Cases()) {
    SCOPED_TRACE(c.name + " " + std::to_string(c.channels) + "x" + std::to_string(c.side));
    Module m = Make(c.name, c.channels, 1, c.input_size);
    torch::Tensor y = Forward(m, torch::randn({2, c.channels, c.side, c.side}));
    EXPECT_EQ(y.sizes(), (std::vector<int64_t>{2, 10}));
    m.eval();
    y = Forward(m, torch::randn({2, c.channels, c.side, c.side}));
    EXPECT_EQ(y.sizes(), (std::vector<int64_t>{2, 10}));
    EXPECT_TRUE(torch::isfinite(y).all().item<bool>());
  }
}

TEST(ZooTest, OneSgdStepReducesTheLoss) {
  for (const char* name : {"lenet5", "resnet20"}) {
    SCOPED_TRACE(name);
    Module m = Make(name, 1);
    torch::manual_seed(0);
    torch::Tensor x = torch::randn({8, 1, 28, 28});
    torch::Tensor target = torch::arange(8, torch::kLong) % 10;
    auto loss_of = [&] { return torch::cross_entropy_loss(Forward(m, x), target); };
    torch::Tensor loss = loss_of();
    loss.backward();
    int with_grad = 0;
    {
      torch::NoGradGuard no_grad;
      for (torch::Tensor p : m.parameters()) {
        ASSERT_TRUE(p.requires_grad());
        if (!p.grad().defined()) continue;
        ++with_grad;
        p.sub_(0.02 * p.grad());
      }
    }
    EXPECT_EQ(with_grad, static_cast<int>(m.parameters().size()));
    EXPECT_LT(loss_of().item<double>(), loss.item<double>());
  }
}

std::vector<torch::jit::NameTensor> Params(const Module& m) {
  std::vector<torch::jit::NameTensor> out;
  for (const torch::jit::NameTensor& p : m.named_parameters()) out.push_back(p);
  return out;
}

TEST(ZooTest, SameSeedSameWeights) {
  for (const char* name : {"lenet5", "resnet20"}) {
    SCOPED_TRACE(name);
    Module a = Make(name, 3, 7), b = Make(name, 3, 7), c = Make(name, 3, 8);
    std::vector<torch::jit::NameTensor> va = Params(a), vb = Params(b), vc = Params(c);
    ASSERT_EQ(va.size(), vb.size());
    bool any_differs = false;
    for (size_t i = 0; i < va.size(); ++i) {
      EXPECT_EQ(va[i].name, vb[i].name);
      EXPECT_TRUE(torch::equal(va[i].value, vb[i].value)) << va[i].name;
      any_differs |= !torch::equal(va[i].value, vc[i].value);
    }
    EXPECT_TRUE(any_differs);
  }
}

bool EndsWith(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// What the model transform relies on: layer kinds by type-name suffix and attributes, one class
// per module, a `training` flag everywhere, and every ReLU visible in the graph.
TEST(ZooTest, StructureForTheTransform) {
  struct Expect {
    std::string name;
    int convs, linears, bns, relus;
  };
  for (const Expect& e : {Expect{"lenet5", 2, 3, 2, 4}, Expect{"resnet20", 21, 1, 21, 19}}) {
    SCOPED_TRACE(e.name);
    Module m = Make(e.name, 1);
    int convs = 0, linears = 0, bns = 0;
    std::set<std::string> types;
    for (const torch::jit::NameModule& sub : m.named_modules()) {
      const std::string type = sub.value.type()->name()->qualifiedName();
      EXPECT_TRUE(types.insert(type).second) << "shared class " << type;
      EXPECT_TRUE(sub.value.hasattr("training")) << sub.name;
      if (EndsWith(type, "Conv2d")) {
        ++convs;
        for (const char* attr : {"weight", "bias", "stride", "padding"}) {
          EXPECT_TRUE(sub.value.hasattr(attr)) << sub.name << "." << attr;
        }
        EXPECT_EQ(sub.value.attr("weight").toTensor().dim(), 4);
      } else if (EndsWith(type, "Linear")) {
        ++linears;
        EXPECT_EQ(sub.value.attr("weight").toTensor().dim(), 2);
        EXPECT_TRUE(sub.value.hasattr("bias"));
      } else if (EndsWith(type, "BatchNorm2d")) {
        ++bns;
        for (const char* attr : {"weight", "bias", "running_mean", "running_var",
                                 "num_batches_tracked", "momentum", "eps"}) {
          EXPECT_TRUE(sub.value.hasattr(attr)) << sub.name << "." << attr;
        }
      }
    }
    EXPECT_EQ(convs, e.convs);
    EXPECT_EQ(linears, e.linears);
    EXPECT_EQ(bns, e.bns);
    // Buffers are not parameters.
    for (const torch::jit::NameTensor& p : m.named_parameters()) {
      EXPECT_FALSE(EndsWith(p.name, "running_mean") || EndsWith(p.name, "num_batches_tracked"))
          << p.name;
    }
    // Count aten::relu across the inlined graph.
    std::shared_ptr<torch::jit::Graph> graph = m.get_method("forward").graph()->copy();
    torch::jit::Inline(*graph);
    int relus = 0;
    for (const torch::jit::Node* node : graph->nodes()) {
      relus += node->kind() == c10::Symbol::fromQualString("aten::relu") ? 1 : 0;
    }
    EXPECT_EQ(relus, e.relus);
  }
}

TEST(ZooTest, TrainAndEvalModes) {
  Module m = Make("resnet20", 3);
  torch::Tensor x = torch::randn({4, 3, 32, 32});
  Module bn = m.attr("bn1").toModule();
  torch::Tensor before = bn.attr("running_mean").toTensor().clone();
  Forward(m, x);  // training: batch statistics, running stats move
  EXPECT_FALSE(torch::equal(before, bn.attr("running_mean").toTensor()));
  m.eval();
  EXPECT_FALSE(bn.attr("training").toBool());
  torch::Tensor stats = bn.attr("running_mean").toTensor().clone();
  torch::Tensor y1 = Forward(m, x), y2 = Forward(m, x.slice(0, 0, 1));
  EXPECT_TRUE(torch::equal(stats, bn.attr("running_mean").toTensor()));
  // Eval mode is per-sample: the first row does not depend on the rest of the batch.
  EXPECT_TRUE(torch::allclose(y1.slice(0, 0, 1), y2, 1e-5, 1e-5));
}

std::string TempPath(const std::string& name) {
  return (fs::path(::testing::TempDir()) / (name + "_" + std::to_string(::getpid()) + ".pt"))
      .string();
}

// Runs a command, returning its exit status and stdout.
int RunCommand(const std::string& cmd, std::string& out) {
  FILE* pipe = ::popen(cmd.c_str(), "r");
  if (pipe == nullptr) return -1;
  std::array<char, 512> buf{};
  while (std::fgets(buf.data(), buf.size(), pipe) != nullptr) out += buf.data();
  return ::pclose(pipe);
}

bool PythonHasTorch() {
  std::string out;
  return RunCommand("python3 -c 'import torch' 2>/dev/null", out) == 0;
}

TEST(ZooTest, SavedArchivesLoadBackWithEqualOutputs) {
  for (const Case& c : Cases()) {
    SCOPED_TRACE(c.name + " " + std::to_string(c.channels));
    Module m = Make(c.name, c.channels, 3, c.input_size);
    Forward(m, torch::randn({4, c.channels, c.side, c.side}));  // move BN statistics off defaults
    m.eval();
    const std::string path = TempPath(c.name);
    m.save(path);
    Module loaded = torch::jit::load(path);
    loaded.eval();
    torch::Tensor x = torch::randn({2, c.channels, c.side, c.side});
    EXPECT_TRUE(torch::equal(Forward(m, x), Forward(loaded, x)));
    fs::remove(path);
  }
}

// One python3 process checks every archive (starting Python with torch takes seconds).
TEST(ZooTest, SavedArchivesLoadInStockPyTorch) {
  if (!PythonHasTorch()) GTEST_SKIP() << "python3 with torch not available";
  std::string args;
  std::vector<std::string> paths;
  for (const Case& c : Cases()) {
    Module m = Make(c.name, c.channels, 3, c.input_size);
    paths.push_back(TempPath(c.name + "_py_" + std::to_string(paths.size())));
    m.save(paths.back());
    args += " " + paths.back() + " " + std::to_string(c.channels) + " " + std::to_string(c.side);
  }
  const std::string script =
      "import torch,sys\n"
      "a=sys.argv[1:]\n"
      "for i in range(0,len(a),3):\n"
      "  m=torch.jit.load(a[i]); m.eval(); c=int(a[i+1]); s=int(a[i+2])\n"
      "  print('shape', tuple(m(torch.randn(2,c,s,s)).shape))\n";
  std::string out;
  const int rc = RunCommand("python3 -c \"" + script + "\"" + args + " 2>&1", out);
  EXPECT_EQ(rc, 0) << out;
  size_t found = 0;
  for (size_t pos = out.find("shape (2, 10)"); pos != std::string::npos;
       pos = out.find("shape (2, 10)", pos + 1)) {
    ++found;
  }
  EXPECT_EQ(found, Cases().size()) << out;
  for (const std::string& path : paths) fs::remove(path);
}

TEST(ZooTest, BadArguments) {
  absl::StatusOr<Module> m = MakeZooModel("vgg16", 3, 10, 1);
  EXPECT_EQ(m.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(m.status().message().find("vgg16"), std::string::npos);
  EXPECT_NE(m.status().message().find("lenet5"), std::string::npos);
  EXPECT_NE(m.status().message().find("resnet20"), std::string::npos);
  EXPECT_EQ(MakeZooModel("lenet5", 0, 10, 1).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(MakeZooModel("lenet5", 1, 0, 1).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(MakeZooModel("lenet5", 1, 10, 1, 8).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(MakeZooModel("lenet5", 1, 10, 1, -1).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ZooModelNames(), (std::vector<std::string>{"lenet5", "resnet20"}));
}

}  // namespace
}  // namespace qnet::engine
