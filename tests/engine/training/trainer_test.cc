#include "workers/engine/training/trainer.h"

#include <cmath>
#include <filesystem>
#include <optional>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "tests/engine/synthetic_idx.h"
#include "workers/engine/quantization/levels.h"
#include "workers/engine/training/checkpoint.h"
#include "workers/engine/training/memory_layout.h"
#include "workers/engine/training/sgd.h"
#include "workers/engine/transform/transform.h"
#include "workers/engine/zoo/zoo.h"
#include "workers/engine/zoo/zoo_builder.h"

namespace qnet::engine {
namespace {

class TrainerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(
        qnet::testing::WriteSyntheticIdx(qnet::testing::ProcessTempDir("trainer_idx"), 320, 100));
  }
  static void TearDownTestSuite() { delete dir_; }

  static DatasetSplits Data() {
    absl::StatusOr<DatasetSplits> d = LoadDataset(*dir_, "idx", {});
    EXPECT_TRUE(d.ok()) << d.status();
    return *std::move(d);
  }

  static JobRun Config(const std::string& zoo, int wb, int ab) {
    JobRun c;
    c.spec.set_model("zoo:" + zoo);
    c.context.dataset_dir = *dir_;
    c.spec.set_weight_bits(wb);
    c.spec.set_activation_bits(ab);
    c.spec.mutable_training()->set_pretrain_epochs(1);
    c.spec.mutable_training()->set_epochs(2);
    c.spec.mutable_training()->set_batch_size(32);
    c.spec.mutable_training()->set_seed(3);
    c.context.device = "cpu";
    return c;
  }

  static torch::jit::Module Model(const std::string& zoo, uint64_t seed) {
    absl::StatusOr<torch::jit::Module> m = MakeZooModel(zoo, 1, 10, seed);
    EXPECT_TRUE(m.ok()) << m.status();
    return *m;
  }

  static std::string* dir_;
};

std::string* TrainerTest::dir_ = nullptr;

// Every 4-D tensor stored channels-last, and at least one of them differently from NCHW (a
// one-channel convolution's weight is both).
bool StoredChannelsLast(const std::vector<torch::Tensor>& tensors) {
  bool differs = false;
  for (const torch::Tensor& t : tensors) {
    if (t.dim() != 4) continue;
    if (!t.is_contiguous(torch::MemoryFormat::ChannelsLast)) return false;
    differs = differs || !t.is_contiguous();
  }
  return differs;
}

TEST_F(TrainerTest, LearnsSeparableProblemAndKeepsItQuantized) {
  DatasetSplits data = Data();
  JobRun config = Config("lenet5", 2, 2);
  config.spec.mutable_training()->set_pretrain_epochs(3);
  std::vector<ProgressEvent> events;
  JobCallbacks cb;
  cb.on_progress = [&](const ProgressEvent& e) { events.push_back(e); };
  Trainer trainer(config, cb, data, torch::kCPU, Model("lenet5", 3));
  ASSERT_TRUE(trainer.Run().ok());
  const JobMetrics& m = trainer.metrics();
  ASSERT_EQ(m.epochs.size(), 5u);
  EXPECT_LT(m.epochs[2].train_loss, m.epochs[0].train_loss);  // pre-training learns
  EXPECT_GT(m.float_top1, 0.9);
  EXPECT_GT(m.quantized_top1, 0.8);
  EXPECT_GE(m.quantized_top5, m.quantized_top1);
  EXPECT_EQ(m.epochs.back().phase, "joint");
  // Progress arrives in order with the phases of the recipe.
  std::set<std::string> phases;
  for (const ProgressEvent& e : events) phases.insert(e.phase);
  EXPECT_EQ(phases, (std::set<std::string>{"pretrain", "weights", "joint", "finalize"}));
}

TEST_F(TrainerTest, StopsWhenAsked) {
  DatasetSplits data = Data();
  JobCallbacks cb;
  int steps = 0;
  cb.on_progress = [&](const ProgressEvent&) { ++steps; };
  cb.should_stop = [&] { return steps >= 2; };
  Trainer trainer(Config("lenet5", 2, 0), cb, data, torch::kCPU, Model("lenet5", 3));
  EXPECT_TRUE(absl::IsCancelled(trainer.Run()));
}

// The temperature follows slope * (epoch + 1) per step and stays at slope * plateau after that.
TEST_F(TrainerTest, TemperatureStopsGrowingAtThePlateau) {
  DatasetSplits data = Data();
  JobRun config = Config("lenet5", 2, 0);
  config.spec.mutable_training()->set_pretrain_epochs(0);
  config.spec.mutable_training()->set_epochs(6);
  Trainer trainer(config, {}, data, torch::kCPU, Model("lenet5", 3));
  ASSERT_TRUE(trainer.Run().ok());
  const Recipe recipe;
  const double plateau = recipe.temperature_slope * recipe.temperature_plateau;
  const std::vector<EpochRecord>& epochs = trainer.metrics().epochs;
  ASSERT_EQ(epochs.size(), 6u);
  // Each record holds T at the epoch's last step: growing through epoch 3, then flat.
  EXPECT_GT(epochs[0].temperature, recipe.temperature_slope);
  EXPECT_LT(epochs[0].temperature, epochs[1].temperature);
  EXPECT_LT(epochs[1].temperature, epochs[2].temperature);
  EXPECT_LT(epochs[2].temperature, plateau);
  for (size_t e = 3; e < epochs.size(); ++e) EXPECT_DOUBLE_EQ(epochs[e].temperature, plateau);
}

// An interrupted run resumed from its checkpoint ends exactly where an uninterrupted one does.
TEST_F(TrainerTest, ResumeFromCheckpointIsExact) {
  torch::set_num_threads(1);
  DatasetSplits data = Data();
  for (const char* zoo : {"lenet5", "resnet20"}) {
    JobRun config = Config(zoo, 2, 2);
    config.spec.mutable_training()->set_max_train_samples(0);
    config.spec.mutable_training()->set_batch_size(64);
    const std::string base = ::testing::TempDir() + "/resume_" + zoo;
    std::filesystem::remove_all(base);

    config.context.checkpoint_dir = base + "/full";
    // At each epoch's checkpoint, whether the weights being trained (the float model's in
    // pre-training, the latents after) are stored channels-last.
    std::vector<bool> nhwc_at_checkpoint;
    Trainer* running = nullptr;
    JobCallbacks watch;
    watch.on_checkpoint = [&](const std::string& path) {
      Trainer& t = *running;
      nhwc_at_checkpoint.push_back(StoredChannelsLast(path.ends_with("ckpt-1.pt")
                                                          ? ModuleParameters(t.float_model())
                                                          : t.quantized().LatentWeights()));
    };
    Trainer full(config, watch, data, torch::kCPU, Model(zoo, 3));
    running = &full;
    ASSERT_TRUE(full.Run().ok());
    EXPECT_EQ(full.metrics().training_layout, "channels_last") << zoo;
    EXPECT_EQ(nhwc_at_checkpoint, std::vector<bool>(3, true)) << zoo;

    // Stop right after the checkpoint of epoch 2 (the first QN epoch), then resume.
    config.context.checkpoint_dir = base + "/cut";
    JobCallbacks cb;
    bool stop = false;
    cb.on_checkpoint = [&](const std::string& path) {
      if (path.ends_with("ckpt-2.pt")) stop = true;
    };
    cb.should_stop = [&] { return stop; };
    Trainer first(config, cb, data, torch::kCPU, Model(zoo, 3));
    ASSERT_TRUE(absl::IsCancelled(first.Run()));
    ASSERT_TRUE(std::filesystem::exists(CheckpointPath(config.context.checkpoint_dir, 2)));
    ASSERT_FALSE(std::filesystem::exists(CheckpointPath(config.context.checkpoint_dir, 3)));
    // The resumed run gets the float model's logits from the checkpoint, not from its model (a
    // fresh zoo initialisation): without them its losses would differ from the full run's.
    absl::StatusOr<Checkpoint> cut =
        LoadCheckpoint(CheckpointPath(config.context.checkpoint_dir, 2));
    ASSERT_TRUE(cut.ok()) << cut.status();
    ASSERT_EQ(cut->tensors.count("teacher/logits"), 1u);
    EXPECT_EQ(cut->tensors["teacher/logits"].sizes(),
              (std::vector<int64_t>{data.train.size(), 10}));
    Trainer resumed(config, {}, data, torch::kCPU, Model(zoo, 3));
    ASSERT_TRUE(resumed.Run().ok());

    const JobMetrics& a = full.metrics();
    const JobMetrics& b = resumed.metrics();
    EXPECT_EQ(a.quantized_top1, b.quantized_top1) << zoo;
    EXPECT_EQ(a.float_top1, b.float_top1) << zoo;
    ASSERT_EQ(a.epochs.size(), b.epochs.size());
    for (size_t i = 0; i < a.epochs.size(); ++i) {
      EXPECT_EQ(a.epochs[i].train_loss, b.epochs[i].train_loss) << zoo << " epoch " << i;
      EXPECT_EQ(a.epochs[i].hard_top1, b.epochs[i].hard_top1) << zoo << " epoch " << i;
    }
    // Both trained channels-last (memory_layout.h) and hand back PyTorch's default layout, the
    // one the artifacts are saved and evaluated in.
    EXPECT_EQ(resumed.metrics().training_layout, "channels_last") << zoo;
    for (Trainer* t : {&full, &resumed}) {
      std::vector<torch::Tensor> tensors = ModuleParameters(t->float_model());
      for (const torch::Tensor& p : ModuleParameters(t->quantized())) tensors.push_back(p);
      for (const torch::Tensor& p : tensors) EXPECT_TRUE(p.is_contiguous()) << zoo;
    }
    auto& la = full.quantized().layers();
    auto& lb = resumed.quantized().layers();
    ASSERT_EQ(la.size(), lb.size());
    for (size_t i = 0; i < la.size(); ++i) {
      EXPECT_TRUE(torch::equal(la[i].latent, lb[i].latent)) << zoo << " " << la[i].name;
      EXPECT_TRUE(torch::equal(la[i].alpha, lb[i].alpha)) << zoo << " " << la[i].name;
    }
  }
  torch::set_num_threads(std::max(1, static_cast<int>(std::thread::hardware_concurrency())));
}

TEST_F(TrainerTest, IgnoresCheckpointsOfAnotherJob) {
  DatasetSplits data = Data();
  JobRun config = Config("lenet5", 2, 0);
  config.spec.mutable_training()->set_epochs(1);
  config.context.checkpoint_dir = ::testing::TempDir() + "/other_job";
  std::filesystem::remove_all(config.context.checkpoint_dir);
  ASSERT_TRUE(
      SaveCheckpoint(CheckpointPath(config.context.checkpoint_dir, 5), {{}, R"({"x":1})"}).ok());
  Trainer t(config, {}, data, torch::kCPU, Model("lenet5", 3));
  ASSERT_TRUE(t.Run().ok());
  EXPECT_EQ(t.metrics().epochs.size(), 2u);
}

// Weight 0 trains on the labels alone: no teacher logits are computed or checkpointed, and the QN
// epoch's loss differs from the distilled run's.
TEST_F(TrainerTest, DistillationWeightZeroTrainsOnLabelsAlone) {
  DatasetSplits data = Data();
  std::vector<double> losses;
  for (std::optional<double> weight : {std::optional<double>(), std::optional<double>(0.0)}) {
    JobRun config = Config("lenet5", 2, 0);
    config.spec.mutable_training()->set_epochs(1);
    if (weight) config.spec.mutable_training()->set_distill_weight(*weight);  // unset: the recipe's
    config.context.checkpoint_dir =
        qnet::testing::ProcessTempDir("distill") + (weight ? "zero" : "default");
    std::filesystem::remove_all(config.context.checkpoint_dir);
    Trainer trainer(config, {}, data, torch::kCPU, Model("lenet5", 3));
    ASSERT_TRUE(trainer.Run().ok());
    absl::StatusOr<Checkpoint> last =
        LoadCheckpoint(CheckpointPath(config.context.checkpoint_dir, 2));
    ASSERT_TRUE(last.ok()) << last.status();
    EXPECT_EQ(last->tensors.count("teacher/logits"), weight ? 0u : 1u);
    losses.push_back(trainer.metrics().epochs.back().train_loss);
  }
  EXPECT_NE(losses[0], losses[1]);
}

TEST(DistillationLossTest, WeightZeroOrNoTeacherIsCrossEntropy) {
  torch::manual_seed(1);
  const torch::Tensor logits = torch::randn({6, 4});
  const torch::Tensor labels = torch::tensor({0, 1, 2, 3, 0, 1}, torch::kLong);
  const torch::Tensor ce = torch::cross_entropy_loss(logits, labels);
  EXPECT_TRUE(torch::equal(DistillationLoss(logits, labels, torch::randn({6, 4}), 0, 1), ce));
  EXPECT_TRUE(torch::equal(DistillationLoss(logits, labels, torch::Tensor(), 0.5, 1), ce));
}

// With weight 1 the loss is tau^2 KL(teacher || student): zero where the student matches the
// teacher, and its gradient is tau * (softmax(s / tau) - softmax(t / tau)) / batch.
TEST(DistillationLossTest, MatchesTheKlDivergenceAndItsGradient) {
  torch::manual_seed(2);
  const torch::Tensor labels = torch::tensor({2, 0, 1}, torch::kLong);
  const torch::Tensor teacher = torch::randn({3, 5}, torch::kDouble);
  EXPECT_NEAR(DistillationLoss(teacher, labels, teacher, 1, 2).item<double>(), 0, 1e-12);
  for (double tau : {1.0, 2.0, 4.0}) {
    const torch::Tensor student = torch::randn({3, 5}, torch::kDouble).requires_grad_(true);
    const torch::Tensor loss = DistillationLoss(student, labels, teacher, 1, tau);
    const torch::Tensor p_s = torch::softmax(student.detach() / tau, 1);
    const torch::Tensor p_t = torch::softmax(teacher / tau, 1);
    const double kl = (p_t * (p_t.log() - p_s.log())).sum(1).mean().item<double>();
    EXPECT_NEAR(loss.item<double>(), tau * tau * kl, 1e-12) << tau;
    loss.backward();
    EXPECT_TRUE(torch::allclose(student.grad(), tau * (p_s - p_t) / 3, 1e-10, 1e-12)) << tau;
  }
  // Mixed: the weighted sum of the two terms.
  const torch::Tensor student = torch::randn({3, 5}, torch::kDouble);
  const double mixed = DistillationLoss(student, labels, teacher, 0.25, 1).item<double>();
  const double ce = torch::cross_entropy_loss(student, labels).item<double>();
  const double kd = DistillationLoss(student, labels, teacher, 1, 1).item<double>();
  EXPECT_NEAR(mixed, 0.75 * ce + 0.25 * kd, 1e-12);
}

// The same gradients listed in two orders (a model imported from ONNX lists its parameters in
// graph order, the same model scripted in module order) clip to the same bits. One large gradient
// and many small ones: which small squares survive rounding depends on what they are added to.
TEST(ClipGradNormTest, DoesNotDependOnTheOrderOfTheParameters) {
  torch::manual_seed(0);  // summed in list order, these two lists' totals differ in the last bit
  std::vector<torch::Tensor> forward, backward;
  for (int i = 0; i < 64; ++i) {
    torch::Tensor p = torch::zeros({3}, torch::requires_grad());
    p.mutable_grad() = torch::randn({3}) * (i == 0 ? 10.0 : 1e-7);
    forward.push_back(p);
    torch::Tensor q = p.detach().clone().requires_grad_();
    q.mutable_grad() = p.grad().clone();
    backward.insert(backward.begin(), q);
  }
  const double a = ClipGradNorm(forward, 1.0);
  const double b = ClipGradNorm(backward, 1.0);
  EXPECT_EQ(a, b);
  for (size_t i = 0; i < forward.size(); ++i) {
    EXPECT_TRUE(torch::equal(forward[i].grad(), backward[backward.size() - 1 - i].grad())) << i;
  }
}

TEST(PredictTest, KeepsDatasetOrderAcrossAPartialLastBatch) {
  torch::manual_seed(3);
  TensorDataset data{torch::randn({7, 1, 2, 2}), torch::zeros({7}, torch::kLong)};
  const torch::Tensor w = torch::randn({4, 3});
  const ForwardFn forward = [&](const torch::Tensor& x) { return x.flatten(1).matmul(w); };
  const torch::Tensor out = Predict(forward, data, 3, torch::kCPU);
  ASSERT_EQ(out.sizes(), (std::vector<int64_t>{7, 3}));
  EXPECT_TRUE(torch::allclose(out, forward(data.images)));
  EXPECT_FALSE(out.requires_grad());
}

// The QN model of `float_model` (2-bit weights), as the trainer builds it.
std::unique_ptr<QuantizedModel> Quantized(const torch::jit::Module& float_model,
                                          bool first_last = false) {
  QuantSpec spec;
  spec.weight_levels = *WeightLevels(2);
  spec.quantize_first_last = first_last;
  absl::StatusOr<std::unique_ptr<QuantizedModel>> q =
      QuantizedModel::Create(float_model.clone(), spec);
  EXPECT_TRUE(q.ok()) << q.status();
  return *std::move(q);
}

TEST_F(TrainerTest, BatchNormReestimationAveragesBatchStatistics) {
  DatasetSplits data = Data();
  std::unique_ptr<QuantizedModel> q = Quantized(Model("resnet20", 1));
  torch::jit::Module& m = q->module();
  torch::jit::Module bn = m.attr("bn1").toModule();
  ASSERT_TRUE(ReestimateBatchNorm(
                  m, [&](const torch::Tensor& x) { return q->Forward(x); }, data.train, 64, 1,
                  torch::kCPU, 3)
                  .ok());
  // The first BN sees the float conv1's output; its running mean is the mean over 3 batches of
  // the per-batch channel means.
  torch::NoGradGuard no_grad;
  BatchIterator it(data.train, 64, 1, 2000003, false);
  torch::Tensor sum = torch::zeros({16});
  torch::jit::Module conv = m.attr("conv1").toModule();
  for (int i = 0; i < 3; ++i) {
    torch::Tensor y = conv.forward({it.Next()->images}).toTensor();
    sum += y.mean({0, 2, 3});
  }
  EXPECT_TRUE(torch::allclose(bn.attr("running_mean").toTensor(), sum / 3, 1e-4, 1e-5));
  EXPECT_EQ(bn.attr("momentum").toDouble(), 0.1);
}

// A batch norm as torch.jit.trace records one from a model in eval mode: the training flag and the
// momentum baked into the graph as constants, the momentum also a class constant (as a scripted
// torch.nn.BatchNorm2d keeps it). Re-estimation still refills the statistics with the plain average
// of the batches' and writes no constant.
TEST_F(TrainerTest, BatchNormReestimationWorksWhateverTheGraphBakedIn) {
  DatasetSplits data = Data();
  ZooBuilder b(1);
  torch::jit::Module bn = b.NewModule("BatchNorm2d");
  bn.register_parameter("weight", torch::ones({1}), false);
  bn.register_parameter("bias", torch::zeros({1}), false);
  bn.register_buffer("running_mean", torch::zeros({1}));
  bn.register_buffer("running_var", torch::ones({1}));
  bn.register_buffer("num_batches_tracked", torch::zeros({}, torch::kLong));
  bn.type()->addConstant("momentum", 0.01);
  bn.define(R"(
def forward(self, x):
    return torch.batch_norm(x, self.weight, self.bias, self.running_mean, self.running_var,
                            False, 0.01, 1e-5, True)
)");
  torch::jit::Module model = b.NewModule("Net");
  model.register_module("bn", bn);
  model.register_module("conv", b.Conv(1, 4, 3, 1, 1));
  model.register_module("fc", b.Linear(4, 10));
  model.define(R"(
def forward(self, x):
    x = torch.relu(self.conv.forward(self.bn.forward(x)))
    return self.fc.forward(torch.flatten(torch.adaptive_avg_pool2d(x, [1, 1]), 1))
)");
  std::unique_ptr<QuantizedModel> q = Quantized(model, /*first_last=*/true);
  const torch::jit::Module qbn = q->module().attr("bn").toModule();
  ASSERT_TRUE(ReestimateBatchNorm(
                  q->module(), [&](const torch::Tensor& x) { return q->Forward(x); }, data.train,
                  64, 1, torch::kCPU, 3)
                  .ok());
  torch::NoGradGuard no_grad;
  BatchIterator it(data.train, 64, 1, 2000003, false);
  double mean = 0, var = 0;
  for (int i = 0; i < 3; ++i) {
    const torch::Tensor x = it.Next()->images;
    mean += x.mean().item<double>() / 3;
    var += x.var().item<double>() / 3;  // unbiased, as batch norm keeps it
  }
  EXPECT_NEAR(qbn.attr("running_mean").toTensor().item<double>(), mean, 1e-5);
  EXPECT_NEAR(qbn.attr("running_var").toTensor().item<double>(), var, 1e-4);
  EXPECT_DOUBLE_EQ(qbn.type()->getConstant("momentum").toDouble(), 0.01);
  // Training steps now update the statistics, as the module's mode says, with the model's own
  // momentum (0.01).
  q->module().train(true);
  const torch::Tensor x = torch::randn({8, 1, 6, 6}) * 3 + 2;
  q->Forward(x);
  EXPECT_NEAR(qbn.attr("running_mean").toTensor().item<double>(),
              0.99 * mean + 0.01 * x.mean().item<double>(), 1e-5);
}

TEST_F(TrainerTest, BatchNormReestimationNeedsATransformedModel) {
  DatasetSplits data = Data();
  torch::jit::Module m = Model("resnet20", 1);
  const absl::Status s = ReestimateBatchNorm(
      m, [&](const torch::Tensor& x) { return m.forward({x}).toTensor(); }, data.train, 64, 1,
      torch::kCPU, 3);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
}

}  // namespace
}  // namespace qnet::engine
