#include "workers/engine/trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <exception>
#include <filesystem>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <torch/csrc/jit/runtime/graph_executor.h>
#ifdef QNET_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#endif
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "workers/engine/checkpoint.h"
#include "workers/engine/export.h"
#include "workers/engine/levels.h"
#include "workers/engine/sgd.h"

namespace qnet::engine {
namespace {

enum class Phase { kWeights, kActivations, kJoint };

const char* PhaseName(Phase p) {
  switch (p) {
    case Phase::kWeights:
      return "weights";
    case Phase::kActivations:
      return "activations";
    case Phase::kJoint:
      return "joint";
  }
  return "";
}

// The QN steps split in thirds: weights only, activations only, both. Per step rather than per
// epoch, so a single QN epoch still runs all three phases.
// What the worker reports as device memory: the bytes the CUDA caching allocator holds (the
// figure nvidia-smi attributes to the process, less the CUDA context).
int64_t DeviceMemoryBytes(const torch::Device& device) {
#ifdef QNET_WITH_CUDA
  if (device.is_cuda()) {
    const c10::CachingDeviceAllocator::DeviceStats stats =
        c10::cuda::CUDACachingAllocator::getDeviceStats(device.index() < 0 ? 0 : device.index());
    return stats.reserved_bytes[static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE)]
        .current;
  }
#endif
  (void)device;
  return 0;
}

Phase PhaseAt(int64_t step, int64_t total, bool activations) {
  if (!activations) return Phase::kWeights;
  if (3 * step < total) return Phase::kWeights;
  if (3 * step < 2 * total) return Phase::kActivations;
  return Phase::kJoint;
}

// Progress in [0, 1) within the step's phase.
double PhaseProgress(int64_t step, int64_t total, bool activations) {
  if (!activations) return static_cast<double>(step) / static_cast<double>(total);
  const int64_t begin = static_cast<int64_t>(PhaseAt(step, total, true)) * total;
  return static_cast<double>(3 * step - begin) / static_cast<double>(total);
}

// Group order of the QN optimizer.
enum Group { kOther = 0, kLatents = 1, kWeightQuantizers = 2, kActivationQuantizers = 3 };

std::vector<bool> ActiveGroups(Phase p) {
  switch (p) {
    case Phase::kWeights:
      return {true, true, true, false};
    case Phase::kActivations:
      return {true, false, false, true};
    case Phase::kJoint:
      return {true, true, true, true};
  }
  return {};
}

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Dropout and any other sampling in the model draw from the global generator: reseeding it from
// (seed, epoch) at every epoch start makes a resumed epoch replay the same numbers.
void SeedEpoch(uint64_t seed, int epoch) {
  torch::manual_seed(seed * 1000003ULL + static_cast<uint64_t>(epoch));
}

bool IsBatchNorm(const torch::jit::Module& m) {
  const std::string type = m.type()->name() ? m.type()->name()->qualifiedName() : "";
  return type.ends_with("BatchNorm2d") || type.ends_with("BatchNorm1d")
             ? m.hasattr("running_mean") && m.hasattr("running_var")
             : false;
}

void CopyInto(const torch::Tensor& dst, const torch::Tensor& src) {
  torch::NoGradGuard no_grad;
  dst.copy_(src.to(dst.device(), dst.scalar_type()));
}

}  // namespace

Accuracy Evaluate(const ForwardFn& forward, const TensorDataset& data, int64_t batch_size,
                  const torch::Device& device) {
  torch::NoGradGuard no_grad;
  Accuracy acc;
  int64_t seen = 0, correct1 = 0, correct5 = 0;
  double loss = 0;
  BatchIterator it(data, batch_size, /*seed=*/0, /*epoch=*/0, /*augment=*/false);
  while (std::optional<Batch> batch = it.Next()) {
    const torch::Tensor labels = batch->labels.to(device);
    const torch::Tensor logits = forward(batch->images.to(device));
    const int64_t k = std::min<int64_t>(5, logits.size(1));
    const torch::Tensor top = std::get<1>(logits.topk(k, 1));
    const torch::Tensor hits = top.eq(labels.unsqueeze(1));
    correct1 += hits.select(1, 0).sum().item<int64_t>();
    correct5 += hits.any(1).sum().item<int64_t>();
    loss += torch::cross_entropy_loss(logits, labels).item<double>() * labels.size(0);
    seen += labels.size(0);
  }
  if (seen > 0) {
    acc.top1 = static_cast<double>(correct1) / static_cast<double>(seen);
    acc.top5 = static_cast<double>(correct5) / static_cast<double>(seen);
    acc.loss = loss / static_cast<double>(seen);
  }
  return acc;
}

torch::Tensor Predict(const ForwardFn& forward, const TensorDataset& data, int64_t batch_size,
                      const torch::Device& device) {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> out;
  batch_size = std::max<int64_t>(1, batch_size);
  for (int64_t i = 0; i < data.size(); i += batch_size) {
    out.push_back(forward(data.images.slice(0, i, i + batch_size).to(device)));
  }
  return out.empty() ? torch::Tensor() : torch::cat(out);
}

torch::Tensor DistillationLoss(const torch::Tensor& logits, const torch::Tensor& labels,
                               const torch::Tensor& teacher, double weight, double tau) {
  const torch::Tensor ce = torch::cross_entropy_loss(logits, labels);
  if (weight <= 0 || !teacher.defined()) return ce;
  const torch::Tensor log_student = torch::log_softmax(logits / tau, 1);
  const torch::Tensor log_teacher = torch::log_softmax(teacher.to(logits.dtype()) / tau, 1);
  const torch::Tensor kl = (log_teacher.exp() * (log_teacher - log_student)).sum(1).mean();
  return (1 - weight) * ce + weight * tau * tau * kl;
}

void ReestimateBatchNorm(torch::jit::Module& model, const ForwardFn& forward,
                         const TensorDataset& train, int64_t batch_size, uint64_t seed,
                         const torch::Device& device, int batches) {
  struct Bn {
    torch::jit::Module module;
    bool settable = false;  // float `momentum` attribute
    double momentum = 0.1;
    bool cumulative = false;
    c10::IValue saved_momentum;
  };
  std::vector<Bn> bns;
  for (const torch::jit::Module& m : model.modules()) {
    if (!IsBatchNorm(m)) continue;
    Bn bn{m, false, 0.1, false, c10::IValue()};
    if (m.hasattr("momentum")) {
      const c10::IValue v = m.attr("momentum");
      bn.saved_momentum = v;
      if (v.isDouble()) {
        bn.settable = true;
      } else if (v.isNone()) {
        bn.cumulative = true;
      }
    } else if (m.type()->hasConstant("momentum")) {
      const c10::IValue v = m.type()->getConstant("momentum");
      if (v.isDouble()) bn.momentum = v.toDouble();
      if (v.isNone()) bn.cumulative = true;
    }
    bns.push_back(bn);
  }
  if (bns.empty() || batches <= 0) return;
  torch::NoGradGuard no_grad;
  for (Bn& bn : bns) {
    bn.module.attr("running_mean").toTensor().zero_();
    bn.module.attr("running_var").toTensor().zero_();
    if (bn.module.hasattr("num_batches_tracked")) {
      bn.module.attr("num_batches_tracked").toTensor().zero_();
    }
  }
  const bool was_training = model.is_training();
  model.train(true);
  BatchIterator it(train, batch_size, seed, /*epoch=*/2000003, /*augment=*/false);
  int done = 0;
  while (done < batches) {
    std::optional<Batch> batch = it.Next();
    if (!batch) break;
    ++done;
    for (Bn& bn : bns) {
      if (bn.settable) bn.module.setattr("momentum", 1.0 / done);
    }
    forward(batch->images.to(device));
  }
  for (Bn& bn : bns) {
    if (bn.settable) {
      bn.module.setattr("momentum", bn.saved_momentum);
    } else if (!bn.cumulative && done > 0) {
      // An exponential average started from zero: divide out its total weight.
      const double weight = 1.0 - std::pow(1.0 - bn.momentum, done);
      bn.module.attr("running_mean").toTensor().div_(weight);
      bn.module.attr("running_var").toTensor().div_(weight);
    }
  }
  model.train(was_training);
}

Recipe ResolveRecipe(const JobConfig& config) {
  Recipe r;
  if (config.train.learning_rate > 0) r.qn_lr = config.train.learning_rate;
  if (config.train.temperature_slope > 0) r.temperature_slope = config.train.temperature_slope;
  if (config.train.distill_weight >= 0) r.distill_weight = config.train.distill_weight;
  r.augment = config.dataset_format == "cifar10";
  return r;
}

Trainer::Trainer(const JobConfig& config, const JobCallbacks& callbacks, const DatasetSplits& data,
                 const torch::Device& device, torch::jit::Module model)
    : config_(config),
      callbacks_(callbacks),
      data_(data),
      device_(device),
      recipe_(ResolveRecipe(config)),
      model_(std::move(model)) {
  // Graphs run as written: no profiling re-specialisation midway, so a resumed run executes the
  // same kernels in the same order as an uninterrupted one (and the first steps are not slower).
  torch::jit::setGraphExecutorOptimize(false);
  steps_per_epoch_ = std::max<int64_t>(
      1, (data_.train.size() + config_.train.batch_size - 1) / config_.train.batch_size);
}

Trainer::~Trainer() = default;

bool Trainer::Stopping() const { return callbacks_.should_stop && callbacks_.should_stop(); }

void Trainer::Emit(ProgressEvent event) {
  if (!callbacks_.on_progress) return;
  const double now = Now();
  const bool edge = event.epoch_end || event.step == 1 || event.step == event.steps_per_epoch;
  if (!edge && now - last_emit_ < 0.2) return;
  last_emit_ = now;
  event.device_memory_bytes = DeviceMemoryBytes(device_);
  callbacks_.on_progress(event);
}

std::string Trainer::Fingerprint() const {
  const TrainSettings& t = config_.train;
  // Only the last path component: a resumed attempt runs on another worker whose cache lives
  // elsewhere, but its model and dataset folders are named by the same content digests.
  auto leaf = [](const std::string& p) { return std::filesystem::path(p).filename().string(); };
  nlohmann::json j = {{"model", leaf(config_.model)},
                      {"dataset", leaf(config_.dataset_dir)},
                      {"format", config_.dataset_format},
                      {"weight_bits", config_.weight_bits},
                      {"weight_levels", config_.weight_levels},
                      {"activation_bits", config_.activation_bits},
                      {"epochs", t.epochs},
                      {"pretrain_epochs", t.pretrain_epochs},
                      {"batch_size", t.batch_size},
                      {"lr", t.learning_rate},
                      {"max_train", t.max_train_samples},
                      {"max_test", t.max_test_samples},
                      {"seed", t.seed},
                      {"slope", t.temperature_slope},
                      {"distill", t.distill_weight},
                      {"first_last", t.quantize_first_last},
                      {"learn_thresholds", t.learn_thresholds}};
  // Added only when set, so checkpoints of jobs without it keep the fingerprint they had.
  if (!config_.input_mean.empty()) {
    j["input_mean"] = config_.input_mean;
    j["input_std"] = config_.input_std;
  }
  return j.dump();
}

std::string Trainer::MetaJson(int epoch, const std::string& stage) const {
  nlohmann::json records = nlohmann::json::array();
  for (const EpochRecord& r : metrics_.epochs) {
    records.push_back({{"epoch", r.epoch},
                       {"phase", r.phase},
                       {"train_loss", r.train_loss},
                       {"temperature", r.temperature},
                       {"soft_top1", r.soft_top1},
                       {"hard_top1", r.hard_top1}});
  }
  nlohmann::json j = {{"fingerprint", Fingerprint()},
                      {"epoch", epoch},
                      {"stage", stage},
                      {"calibrated", calibrated_},
                      {"float_top1", metrics_.float_top1},
                      {"float_top5", metrics_.float_top5},
                      {"last_hard_top1", last_hard_top1_},
                      {"epochs", records}};
  return j.dump();
}

absl::Status Trainer::SaveEpoch(int epoch, const std::string& stage) {
  if (config_.checkpoint_dir.empty()) return absl::OkStatus();
  Checkpoint c;
  c.meta = MetaJson(epoch, stage);
  torch::jit::Module& m = quantized_ ? quantized_->module() : model_;
  std::set<std::string> skip;
  if (quantized_) {
    for (const QuantizedLayer& l : quantized_->layers()) skip.insert(l.name + ".weight");
    for (size_t i = 0; i < quantized_->layers().size(); ++i) {
      const QuantizedLayer& l = quantized_->layers()[i];
      const std::string p = absl::StrCat("layer/", i, "/");
      c.tensors[p + "latent"] = l.latent;
      c.tensors[p + "alpha"] = l.alpha;
      c.tensors[p + "beta"] = l.beta;
      c.tensors[p + "thresholds"] = l.thresholds;
    }
  }
  for (const auto& p : m.named_parameters(true)) {
    if (skip.count(p.name) == 0) c.tensors["model/" + p.name] = p.value;
  }
  for (const auto& b : m.named_buffers(true)) c.tensors["model/" + b.name] = b.value;
  // A resumed QN stage may no longer have the float model (a zoo model pre-trained by this job).
  if (teacher_logits_.defined()) c.tensors["teacher/logits"] = teacher_logits_;
  if (sgd_) {
    for (size_t i = 0; i < sgd_->buffers().size(); ++i) {
      if (sgd_->buffers()[i].defined()) c.tensors[absl::StrCat("sgd/", i)] = sgd_->buffers()[i];
    }
  }
  const std::string path = CheckpointPath(config_.checkpoint_dir, epoch);
  if (absl::Status s = SaveCheckpoint(path, c); !s.ok()) return s;
  if (callbacks_.on_checkpoint) callbacks_.on_checkpoint(path);
  return absl::OkStatus();
}

namespace {

// Copies "model/<name>" tensors of a checkpoint into the module's parameters and buffers.
absl::Status LoadModuleTensors(torch::jit::Module& m, const Checkpoint& c,
                               const std::set<std::string>& skip) {
  auto load = [&](const std::string& name, const torch::Tensor& dst) -> absl::Status {
    if (skip.count(name) != 0) return absl::OkStatus();
    auto it = c.tensors.find("model/" + name);
    if (it == c.tensors.end() || it->second.sizes() != dst.sizes()) {
      return absl::InvalidArgumentError(absl::StrCat("checkpoint lacks or mismatches ", name));
    }
    CopyInto(dst, it->second);
    return absl::OkStatus();
  };
  for (const auto& p : m.named_parameters(true)) {
    if (absl::Status s = load(p.name, p.value); !s.ok()) return s;
  }
  for (const auto& b : m.named_buffers(true)) {
    if (absl::Status s = load(b.name, b.value); !s.ok()) return s;
  }
  return absl::OkStatus();
}

void LoadSgdBuffers(Sgd& sgd, const Checkpoint& c, const torch::Device& device) {
  for (size_t i = 0; i < sgd.buffers().size(); ++i) {
    auto it = c.tensors.find(absl::StrCat("sgd/", i));
    sgd.buffers()[i] = it == c.tensors.end() ? torch::Tensor() : it->second.to(device).clone();
  }
}

void LoadRecords(const nlohmann::json& meta, JobMetrics& metrics) {
  metrics.epochs.clear();
  for (const auto& r : meta.at("epochs")) {
    EpochRecord e;
    e.epoch = r.at("epoch").get<int>();
    e.phase = r.at("phase").get<std::string>();
    e.train_loss = r.at("train_loss").get<double>();
    e.temperature = r.at("temperature").get<double>();
    e.soft_top1 = r.at("soft_top1").get<double>();
    e.hard_top1 = r.at("hard_top1").get<double>();
    metrics.epochs.push_back(e);
  }
  metrics.float_top1 = meta.at("float_top1").get<double>();
  metrics.float_top5 = meta.at("float_top5").get<double>();
}

}  // namespace

absl::Status Trainer::Run() {
  const TrainSettings& t = config_.train;
  const int pretrain_epochs = std::max(0, t.pretrain_epochs);
  const int qn_epochs = std::max(0, t.epochs);
  metrics_ = JobMetrics();
  metrics_.device = device_.str();

  // Resume from the newest checkpoint of this same job, if any.
  std::optional<LoadedCheckpoint> resume = LoadLatestCheckpoint(config_.checkpoint_dir);
  nlohmann::json meta;
  if (resume) {
    meta = nlohmann::json::parse(resume->checkpoint.meta, nullptr, /*allow_exceptions=*/false);
    if (meta.is_discarded() || !meta.contains("fingerprint") ||
        meta["fingerprint"] != Fingerprint()) {
      resume.reset();  // another job's checkpoints: start afresh
    }
  }
  int completed = 0;
  std::string stage;
  if (resume) {
    try {
      completed = meta.at("epoch").get<int>();
      stage = meta.at("stage").get<std::string>();
      calibrated_ = meta.at("calibrated").get<bool>();
      last_hard_top1_ = meta.at("last_hard_top1").get<double>();
      LoadRecords(meta, metrics_);
    } catch (const std::exception& e) {
      return absl::InternalError(absl::StrCat("checkpoint ", resume->path, ": ", e.what()));
    }
  }

  model_.to(device_);
  if (stage != "qn") {
    if (stage == "pretrain") {
      if (absl::Status s = LoadModuleTensors(model_, resume->checkpoint, {}); !s.ok()) return s;
    }
    if (completed < pretrain_epochs) {
      std::vector<torch::Tensor> params;
      for (const torch::Tensor& p : model_.parameters()) {
        if (p.is_floating_point()) params.push_back(p.requires_grad_(true));
      }
      sgd_ = std::make_unique<Sgd>(std::vector<ParamGroup>{{params, recipe_.pretrain_weight_decay}},
                                   recipe_.momentum);
      if (stage == "pretrain") LoadSgdBuffers(*sgd_, resume->checkpoint, device_);
      if (absl::Status s = Pretrain(completed); !s.ok()) return s;
      sgd_.reset();
    }
    model_.eval();
    const Accuracy fp =
        Evaluate([&](const torch::Tensor& x) { return model_.forward({x}).toTensor(); }, data_.test,
                 t.batch_size, device_);
    metrics_.float_top1 = fp.top1;
    metrics_.float_top5 = fp.top5;
    if (recipe_.distill_weight > 0 && t.epochs > 0) {
      teacher_logits_ =
          Predict([&](const torch::Tensor& x) { return model_.forward({x}).toTensor(); },
                  data_.train, t.batch_size, device_);
    }
    if (!config_.float_model_path.empty()) {
      torch::jit::Module cpu_copy = model_.clone();
      cpu_copy.to(torch::kCPU);
      if (absl::Status s =
              RecordInputNormalization(cpu_copy, data_.channel_mean, data_.channel_std);
          !s.ok()) {
        return s;
      }
      if (absl::Status s = SaveModule(cpu_copy, config_.float_model_path); !s.ok()) return s;
    }
    completed = std::max(completed, pretrain_epochs);
  }

  // The QN model: a clone (fresh graphs to rewrite) of the float model.
  QuantSpec spec;
  absl::StatusOr<torch::Tensor> wl = config_.weight_levels.empty()
                                         ? WeightLevels(config_.weight_bits)
                                         : LevelsFromList(config_.weight_levels);
  if (!wl.ok()) return wl.status();
  spec.weight_levels = *wl;
  if (config_.activation_bits > 0) {
    absl::StatusOr<torch::Tensor> al = ActivationLevels(config_.activation_bits);
    if (!al.ok()) return al.status();
    spec.activation_levels = *al;
  }
  spec.quantize_first_last = t.quantize_first_last;
  spec.learn_thresholds = t.learn_thresholds;
  absl::StatusOr<std::unique_ptr<QuantizedModel>> q = QuantizedModel::Create(model_.clone(), spec);
  if (!q.ok()) return q.status();
  quantized_ = *std::move(q);
  sgd_ = std::make_unique<Sgd>(
      std::vector<ParamGroup>{
          {quantized_->OtherParameters(), recipe_.other_weight_decay},
          {quantized_->LatentWeights(), recipe_.latent_weight_decay},
          {quantized_->WeightQuantizerParameters(), 0.0, recipe_.quantizer_lr_scale},
          {quantized_->ActivationQuantizerParameters(), 0.0, recipe_.quantizer_lr_scale}},
      recipe_.momentum);
  if (stage == "qn") {
    if (absl::Status s = RestoreQuantized(*resume); !s.ok()) return s;
  }
  if (absl::Status s = FineTune(completed - pretrain_epochs); !s.ok()) return s;

  // Final: hard everywhere, batch-norm statistics re-estimated under the hard quantizer.
  QuantizedModel& qm = *quantized_;
  if (!qm.activation_quantizers().empty() && !calibrated_) {
    if (absl::Status s = Calibrate(); !s.ok()) return s;
  }
  qm.SetActivationsEnabled(true);
  qm.SetHard(true);
  qm.RefreshWeights();
  ProgressEvent fin;
  fin.phase = "finalize";
  fin.epoch = fin.total_epochs = pretrain_epochs + qn_epochs;
  fin.accuracy = last_hard_top1_;
  Emit(fin);
  const ForwardFn forward = [&](const torch::Tensor& x) { return qm.Forward(x); };
  if (metrics_.epochs.empty() || qn_epochs == 0) {
    qm.module().eval();
    metrics_.hard_top1 = Evaluate(forward, data_.test, t.batch_size, device_).top1;
    metrics_.soft_top1 = metrics_.hard_top1;
  } else {
    metrics_.soft_top1 = metrics_.epochs.back().soft_top1;
    metrics_.hard_top1 = metrics_.epochs.back().hard_top1;
  }
  ReestimateBatchNorm(qm.module(), forward, data_.train, t.batch_size, t.seed, device_,
                      recipe_.bn_reestimate_batches);
  qm.module().eval();
  const Accuracy final_acc = Evaluate(forward, data_.test, t.batch_size, device_);
  metrics_.quantized_top1 = final_acc.top1;
  metrics_.quantized_top5 = final_acc.top5;
  return absl::OkStatus();
}

absl::Status Trainer::RestoreQuantized(const LoadedCheckpoint& ckpt) {
  const Checkpoint& c = ckpt.checkpoint;
  std::set<std::string> skip;
  for (const QuantizedLayer& l : quantized_->layers()) skip.insert(l.name + ".weight");
  if (absl::Status s = LoadModuleTensors(quantized_->module(), c, skip); !s.ok()) {
    return absl::InternalError(absl::StrCat(ckpt.path, ": ", s.message()));
  }
  for (size_t i = 0; i < quantized_->layers().size(); ++i) {
    QuantizedLayer& l = quantized_->layers()[i];
    const std::string p = absl::StrCat("layer/", i, "/");
    for (const auto& [key, dst] : {std::pair<std::string, torch::Tensor>{"latent", l.latent},
                                   {"alpha", l.alpha},
                                   {"beta", l.beta},
                                   {"thresholds", l.thresholds}}) {
      auto it = c.tensors.find(p + key);
      if (it == c.tensors.end() || it->second.sizes() != dst.sizes()) {
        return absl::InternalError(absl::StrCat(ckpt.path, ": lacks ", p, key));
      }
      CopyInto(dst, it->second);
    }
  }
  LoadSgdBuffers(*sgd_, c, device_);
  // Checkpoints written without distillation resume without it.
  auto teacher = c.tensors.find("teacher/logits");
  if (teacher != c.tensors.end() && teacher->second.size(0) == data_.train.size()) {
    teacher_logits_ = teacher->second.to(device_);
  }
  return absl::OkStatus();
}

absl::Status Trainer::Pretrain(int first_epoch) {
  const TrainSettings& t = config_.train;
  const int pretrain_epochs = t.pretrain_epochs;
  const int total_epochs = pretrain_epochs + std::max(0, t.epochs);
  const int64_t total_steps = static_cast<int64_t>(pretrain_epochs) * steps_per_epoch_;
  const double start = Now();
  int64_t done_steps = 0;
  for (int epoch = first_epoch; epoch < pretrain_epochs; ++epoch) {
    SeedEpoch(t.seed, epoch);
    model_.train(true);
    BatchIterator it(data_.train, t.batch_size, t.seed, epoch, recipe_.augment);
    int64_t step = 0;
    double loss_sum = 0;
    while (std::optional<Batch> batch = it.Next()) {
      if (Stopping()) return absl::CancelledError("stopped by request");
      const int64_t global = static_cast<int64_t>(epoch) * steps_per_epoch_ + step;
      // Cosine decay over all pre-training steps.
      const double lr = 0.5 * recipe_.pretrain_lr *
                        (1 + std::cos(M_PI * static_cast<double>(global) /
                                      static_cast<double>(std::max<int64_t>(1, total_steps))));
      const torch::Tensor labels = batch->labels.to(device_);
      const torch::Tensor logits = model_.forward({batch->images.to(device_)}).toTensor();
      const torch::Tensor loss = torch::cross_entropy_loss(logits, labels);
      loss.backward();
      ClipGradNorm(sgd_->AllParameters(), recipe_.clip_norm);
      sgd_->Step(lr);
      sgd_->ZeroGrad();
      ++step;
      ++done_steps;
      const double l = loss.item<double>();
      loss_sum += l;
      ProgressEvent ev;
      ev.phase = "pretrain";
      ev.epoch = epoch + 1;
      ev.total_epochs = total_epochs;
      ev.step = step;
      ev.steps_per_epoch = it.num_batches();
      ev.loss = l;
      ev.accuracy = last_hard_top1_;
      const double elapsed = Now() - start;
      ev.images_per_second = static_cast<double>(done_steps * t.batch_size) / elapsed;
      ev.eta_seconds =
          elapsed / static_cast<double>(done_steps) *
          static_cast<double>(static_cast<int64_t>(total_epochs) * steps_per_epoch_ - global - 1);
      Emit(ev);
    }
    model_.eval();
    const Accuracy acc =
        Evaluate([&](const torch::Tensor& x) { return model_.forward({x}).toTensor(); }, data_.test,
                 t.batch_size, device_);
    last_hard_top1_ = acc.top1;
    metrics_.epochs.push_back(
        {epoch + 1, "pretrain", loss_sum / std::max<int64_t>(1, step), 0, acc.top1, acc.top1});
    ProgressEvent ev;
    ev.phase = "pretrain";
    ev.epoch = epoch + 1;
    ev.total_epochs = total_epochs;
    ev.step = ev.steps_per_epoch = step;
    ev.loss = metrics_.epochs.back().train_loss;
    ev.accuracy = acc.top1;
    ev.epoch_end = true;
    Emit(ev);
    if (absl::Status s = SaveEpoch(epoch + 1, "pretrain"); !s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status Trainer::Calibrate() {
  QuantizedModel& qm = *quantized_;
  torch::NoGradGuard no_grad;
  const bool was_training = qm.module().is_training();
  qm.module().eval();
  qm.SetActivationsEnabled(false);
  qm.SetCalibrating(true);
  qm.RefreshWeights();
  std::vector<ActivationCalibrator> calibrators(
      qm.activation_quantizers().size(), ActivationCalibrator(recipe_.calibration_percentile));
  BatchIterator it(data_.train, config_.train.batch_size, config_.train.seed, /*epoch=*/1000003,
                   /*augment=*/false);
  for (int b = 0; b < recipe_.calibration_batches; ++b) {
    std::optional<Batch> batch = it.Next();
    if (!batch) break;
    qm.Forward(batch->images.to(device_));
    const std::vector<torch::Tensor> seen = qm.ObservedActivations();
    for (size_t i = 0; i < seen.size(); ++i) {
      if (seen[i].numel() == 0) continue;
      if (absl::Status s = calibrators[i].Observe(seen[i].cpu()); !s.ok()) return s;
    }
  }
  qm.SetCalibrating(false);
  for (size_t i = 0; i < calibrators.size(); ++i) {
    if (calibrators[i].batches() == 0) continue;  // never reached: keep the default range
    absl::StatusOr<QuantizerParams> p =
        InitActivationQuantizer(calibrators[i], qm.activation_quantizers()[i].levels.cpu());
    if (!p.ok()) return p.status();
    qm.SetActivationQuantizer(i, p->alpha, p->beta, p->thresholds);
  }
  qm.module().train(was_training);
  calibrated_ = true;
  return absl::OkStatus();
}

absl::Status Trainer::FineTune(int first_epoch) {
  const TrainSettings& t = config_.train;
  const int pretrain_epochs = std::max(0, t.pretrain_epochs);
  const int qn_epochs = std::max(0, t.epochs);
  const int total_epochs = pretrain_epochs + qn_epochs;
  QuantizedModel& qm = *quantized_;
  const bool activations = !qm.activation_quantizers().empty();
  const int64_t total_steps = static_cast<int64_t>(qn_epochs) * steps_per_epoch_;
  const double start = Now();
  int64_t done_steps = 0;
  const ForwardFn forward = [&](const torch::Tensor& x) { return qm.Forward(x); };
  Phase phase = Phase::kWeights;
  for (int epoch = first_epoch; epoch < qn_epochs; ++epoch) {
    SeedEpoch(t.seed, pretrain_epochs + epoch);
    BatchIterator it(data_.train, t.batch_size, t.seed, pretrain_epochs + epoch, recipe_.augment);
    int64_t step = 0;
    double loss_sum = 0;
    double temperature = 0;  // the schedule's T at the epoch's last step
    while (std::optional<Batch> batch = it.Next()) {
      if (Stopping()) return absl::CancelledError("stopped by request");
      const int64_t global = static_cast<int64_t>(epoch) * steps_per_epoch_ + step;
      phase = PhaseAt(global, total_steps, activations);
      if (phase != Phase::kWeights && !calibrated_) {
        if (absl::Status s = Calibrate(); !s.ok()) return s;
      }
      qm.module().train(true);
      qm.SetHard(false, recipe_.hard_forward_activations);
      qm.SetActivationsEnabled(phase != Phase::kWeights);
      temperature = std::min(
          recipe_.temperature_cap,
          recipe_.temperature_slope *
              std::min(recipe_.temperature_plateau,
                       1.0 + static_cast<double>(global) / static_cast<double>(steps_per_epoch_)));
      qm.SetTemperature(
          std::min(recipe_.temperature_cap, temperature * recipe_.weight_temperature_factor),
          std::min(recipe_.temperature_cap, temperature * recipe_.activation_temperature_factor));
      const double progress = PhaseProgress(global, total_steps, activations);
      const double lr = recipe_.qn_lr * (progress < 0.7 ? 1.0 : 0.1);
      if (phase == Phase::kActivations) {
        torch::NoGradGuard no_grad;  // weights are fixed in this phase
        qm.RefreshWeights();
      } else {
        qm.RefreshWeights();
      }
      const torch::Tensor teacher =
          teacher_logits_.defined() ? teacher_logits_.index_select(0, batch->indices.to(device_))
                                    : torch::Tensor();
      const torch::Tensor loss =
          DistillationLoss(qm.Forward(batch->images.to(device_)), batch->labels.to(device_),
                           teacher, recipe_.distill_weight, recipe_.distill_temperature);
      loss.backward();
      // Clipping sees the gradients as backward produced them, T factor included (docs/METHOD.md).
      ClipGradNorm(sgd_->AllParameters(), recipe_.clip_norm);
      sgd_->Step(lr, ActiveGroups(phase));
      sgd_->ZeroGrad();
      ++step;
      ++done_steps;
      const double l = loss.item<double>();
      loss_sum += l;
      ProgressEvent ev;
      ev.phase = PhaseName(phase);
      ev.epoch = pretrain_epochs + epoch + 1;
      ev.total_epochs = total_epochs;
      ev.step = step;
      ev.steps_per_epoch = it.num_batches();
      ev.loss = l;
      ev.temperature = temperature;
      ev.accuracy = last_hard_top1_;
      const double elapsed = Now() - start;
      ev.images_per_second = static_cast<double>(done_steps * t.batch_size) / elapsed;
      ev.eta_seconds =
          elapsed / static_cast<double>(done_steps) * static_cast<double>(total_steps - global - 1);
      Emit(ev);
    }
    // Soft and hard evaluation (the gap between them is the train/eval mismatch to watch).
    qm.module().eval();
    qm.SetHard(false);
    qm.RefreshWeights();
    const Accuracy soft = Evaluate(forward, data_.test, t.batch_size, device_);
    qm.SetHard(true);
    qm.RefreshWeights();
    const Accuracy hard = Evaluate(forward, data_.test, t.batch_size, device_);
    qm.SetHard(false);
    last_hard_top1_ = hard.top1;
    metrics_.epochs.push_back({pretrain_epochs + epoch + 1, PhaseName(phase),
                               loss_sum / std::max<int64_t>(1, step), temperature, soft.top1,
                               hard.top1});
    ProgressEvent ev;
    ev.phase = PhaseName(phase);
    ev.epoch = pretrain_epochs + epoch + 1;
    ev.total_epochs = total_epochs;
    ev.step = ev.steps_per_epoch = step;
    ev.loss = metrics_.epochs.back().train_loss;
    ev.temperature = temperature;
    ev.accuracy = hard.top1;
    ev.epoch_end = true;
    Emit(ev);
    if (absl::Status s = SaveEpoch(pretrain_epochs + epoch + 1, "qn"); !s.ok()) return s;
  }
  return absl::OkStatus();
}

}  // namespace qnet::engine
