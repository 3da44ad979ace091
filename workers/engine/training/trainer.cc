#include "workers/engine/training/trainer.h"

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
#include "workers/engine/quantization/levels.h"
#include "workers/engine/training/checkpoint.h"
#include "workers/engine/training/memory_layout.h"
#include "workers/engine/training/sgd.h"

namespace qnet::engine {
namespace {

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

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Dropout and any other sampling in the model draw from the global generator: reseeding it from
// (seed, epoch) at every epoch start makes a resumed epoch replay the same numbers.
void SeedEpoch(uint64_t seed, int epoch) {
  torch::manual_seed(seed * 1000003ULL + static_cast<uint64_t>(epoch));
}

void CopyInto(const torch::Tensor& dst, const torch::Tensor& src) {
  torch::NoGradGuard no_grad;
  dst.copy_(src.to(dst.device(), dst.scalar_type()));
}

}  // namespace

Trainer::Trainer(const JobRun& run, const JobCallbacks& callbacks, const DatasetSplits& data,
                 const torch::Device& device, torch::jit::Module model,
                 FloatModelSink on_float_model)
    : run_(run),
      callbacks_(callbacks),
      on_float_model_(std::move(on_float_model)),
      data_(data),
      device_(device),
      recipe_(ResolveRecipe(run.spec, data.augment)),
      model_(std::move(model)) {
  steps_per_epoch_ =
      std::max<int64_t>(1, (data_.train.size() + run_.spec.training().batch_size() - 1) /
                               run_.spec.training().batch_size());
}

Trainer::~Trainer() = default;

bool Trainer::Stopping() const { return callbacks_.should_stop && callbacks_.should_stop(); }

bool Trainer::ProgressDue(int64_t step, int64_t steps) const {
  if (!callbacks_.on_progress) return false;
  return step == 1 || step == steps || Now() - last_emit_ >= 0.2;
}

void Trainer::Emit(ProgressEvent event) {
  if (!callbacks_.on_progress) return;
  last_emit_ = Now();
  event.device_memory_bytes = DeviceMemoryBytes(device_);
  callbacks_.on_progress(event);
}

std::string Trainer::Fingerprint() const {
  const v1::TrainingSettings& t = run_.spec.training();
  // Only the last path component: a resumed attempt runs on another worker whose cache lives
  // elsewhere, but its model and dataset folders are named by the same content digests.
  auto leaf = [](const std::string& p) { return std::filesystem::path(p).filename().string(); };
  const v1::JobSpec& spec = run_.spec;
  const std::string& model =
      run_.context.model_path.empty() ? spec.model() : run_.context.model_path;
  nlohmann::json j = {{"model", leaf(model)},
                      {"dataset", leaf(run_.context.dataset_dir)},
                      {"format", run_.context.dataset_format},
                      {"weight_bits", spec.weight_bits()},
                      {"weight_levels", std::vector<double>(spec.weight_levels().begin(),
                                                            spec.weight_levels().end())},
                      {"activation_bits", spec.activation_bits()},
                      {"epochs", t.epochs()},
                      {"pretrain_epochs", t.pretrain_epochs()},
                      {"batch_size", t.batch_size()},
                      {"lr", t.learning_rate()},
                      {"max_train", t.max_train_samples()},
                      {"max_test", t.max_test_samples()},
                      {"seed", t.seed()},
                      {"slope", t.temperature_slope()},
                      {"distill", t.has_distill_weight() ? t.distill_weight() : -1.0},
                      {"first_last", t.quantize_first_last()},
                      {"learn_thresholds", t.learn_thresholds()}};
  // Added only when set, so checkpoints of jobs without it keep the fingerprint they had.
  const v1::InputNormalization& norm = spec.input_normalization();
  if (!norm.mean().empty()) {
    j["input_mean"] = std::vector<double>(norm.mean().begin(), norm.mean().end());
    j["input_std"] = std::vector<double>(norm.std().begin(), norm.std().end());
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
  if (run_.context.checkpoint_dir.empty()) return absl::OkStatus();
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
  const std::string path = CheckpointPath(run_.context.checkpoint_dir, epoch);
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

namespace {

// Graphs run as written while a job trains: no profiling re-specialisation midway, so a resumed
// run executes the same kernels in the same order as an uninterrupted one (and the first steps
// are not slower). The process's setting is restored afterwards.
class GraphOptimizationOff {
 public:
  GraphOptimizationOff() : saved_(torch::jit::getGraphExecutorOptimize()) {
    torch::jit::setGraphExecutorOptimize(false);
  }
  ~GraphOptimizationOff() { torch::jit::setGraphExecutorOptimize(saved_); }
  GraphOptimizationOff(const GraphOptimizationOff&) = delete;
  GraphOptimizationOff& operator=(const GraphOptimizationOff&) = delete;

 private:
  bool saved_;
};

}  // namespace

absl::Status Trainer::Run() {
  GraphOptimizationOff graph_optimization_off;
  // Training needs gradients whatever the calling thread's mode (a caller inside a NoGradGuard
  // would otherwise fail every job with autograd's "does not require grad").
  torch::AutoGradMode grad_enabled(true);
  const v1::TrainingSettings& t = run_.spec.training();
  const int pretrain_epochs = std::max(0, t.pretrain_epochs());
  metrics_ = JobMetrics();
  metrics_.device = device_.str();

  // Resume from the newest checkpoint of this same job, if any.
  std::optional<LoadedCheckpoint> resume = LoadLatestCheckpoint(run_.context.checkpoint_dir);
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
  if (device_.is_cpu()) {
    const std::optional<Batch> probe = BatchIterator(data_.train, 2).Next();
    channels_last_ = probe && ChannelsLastTrains(model_, probe->images);
  }
  metrics_.training_layout = channels_last_ ? "channels_last" : "contiguous";
  // The QN model below is cloned from model_ and keeps its layout.
  SetLayout(channels_last_);
  if (stage != "qn") {
    if (absl::Status s = TrainFloat(completed, stage, resume); !s.ok()) return s;
    completed = std::max(completed, pretrain_epochs);
  }

  // The QN model: a clone (fresh graphs to rewrite) of the float model.
  QuantSpec spec;
  const v1::JobSpec& job = run_.spec;
  absl::StatusOr<torch::Tensor> wl =
      job.weight_levels().empty() ? WeightLevels(job.weight_bits())
                                  : LevelsFromList(std::vector<double>(job.weight_levels().begin(),
                                                                       job.weight_levels().end()));
  if (!wl.ok()) return wl.status();
  spec.weight_levels = *wl;
  if (job.activation_bits() > 0) {
    absl::StatusOr<torch::Tensor> al = ActivationLevels(job.activation_bits());
    if (!al.ok()) return al.status();
    spec.activation_levels = *al;
    // Signed inputs get the symmetric integer levels of the same width (docs/METHOD.md).
    absl::StatusOr<torch::Tensor> signed_levels =
        WeightLevels(job.activation_bits(), WeightLevelScheme::kUniform);
    if (!signed_levels.ok()) return signed_levels.status();
    spec.signed_activation_levels = *signed_levels;
  }
  spec.quantize_first_last = t.quantize_first_last();
  spec.learn_thresholds = t.learn_thresholds();
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
  const int qn_epochs = std::max(0, t.epochs());
  QnPhase qn(*quantized_, recipe_, teacher_logits_, data_.test, t.batch_size(), device_,
             steps_per_epoch_, static_cast<int64_t>(qn_epochs) * steps_per_epoch_,
             [this] { return calibrated_ ? absl::OkStatus() : Calibrate(); });
  if (absl::Status s = RunEpochs(qn, completed - pretrain_epochs, qn_epochs, pretrain_epochs);
      !s.ok()) {
    return s;
  }
  return Finalize();
}

// Pre-training (or its rest, when resumed), the float baseline's accuracy and the teacher's
// logits.
absl::Status Trainer::TrainFloat(int completed, const std::string& stage,
                                 const std::optional<LoadedCheckpoint>& resume) {
  const v1::TrainingSettings& t = run_.spec.training();
  const int pretrain_epochs = std::max(0, t.pretrain_epochs());
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
    PretrainPhase pretrain(model_, recipe_, data_.test, t.batch_size(), device_,
                           static_cast<int64_t>(pretrain_epochs) * steps_per_epoch_);
    if (absl::Status s = RunEpochs(pretrain, completed, pretrain_epochs, 0); !s.ok()) return s;
    sgd_.reset();
  }
  model_.eval();
  const ForwardFn forward = [&](const torch::Tensor& x) { return model_.forward({x}).toTensor(); };
  const Accuracy fp = Evaluate(forward, data_.test, t.batch_size(), device_);
  metrics_.float_top1 = fp.top1;
  metrics_.float_top5 = fp.top5;
  if (recipe_.distill_weight > 0 && t.epochs() > 0) {
    teacher_logits_ = Predict(forward, data_.train, t.batch_size(), device_);
  }
  if (!on_float_model_) return absl::OkStatus();
  SetLayout(false);  // the saved float model in PyTorch's default layout
  const absl::Status saved = on_float_model_(model_);
  SetLayout(channels_last_);
  return saved;
}

void Trainer::SetLayout(bool channels_last) {
  SetChannelsLast(ModuleParameters(model_), channels_last);
  if (quantized_) SetChannelsLast(ModuleParameters(*quantized_), channels_last);
}

absl::Status Trainer::RunEpochs(EpochPhase& phase, int first_epoch, int epochs, int epoch_offset) {
  const v1::TrainingSettings& t = run_.spec.training();
  const int total_epochs = std::max(0, t.pretrain_epochs()) + std::max(0, t.epochs());
  const int64_t run_steps_left =
      static_cast<int64_t>(total_epochs - epoch_offset) * steps_per_epoch_;
  const double start = Now();
  int64_t done_steps = 0;
  for (int epoch = first_epoch; epoch < epochs; ++epoch) {
    const int run_epoch = epoch_offset + epoch;
    SeedEpoch(t.seed(), run_epoch);
    phase.BeginEpoch();
    BatchIterator it(data_.train, t.batch_size(), t.seed(), run_epoch, recipe_.augment);
    int64_t step = 0;
    // Summed on the device: reading each step's loss would synchronise with it every step.
    torch::Tensor loss_sum =
        torch::zeros({}, torch::TensorOptions().dtype(torch::kDouble).device(device_));
    StepPlan plan;
    while (std::optional<Batch> batch = it.Next()) {
      if (Stopping()) return absl::CancelledError("stopped by request");
      const int64_t global = static_cast<int64_t>(epoch) * steps_per_epoch_ + step;
      absl::StatusOr<StepPlan> planned = phase.Prepare(global);
      if (!planned.ok()) return planned.status();
      plan = *std::move(planned);
      const torch::Tensor loss = phase.Loss(*batch);
      loss.backward();
      // Clipping sees the gradients as backward produced them, the temperature's factor included
      // (docs/METHOD.md).
      ClipGradNorm(sgd_->AllParameters(), recipe_.clip_norm);
      phase.ScaleGradients();
      sgd_->Step(plan.learning_rate, plan.groups);
      sgd_->ZeroGrad();
      ++step;
      ++done_steps;
      loss_sum += loss.detach().to(torch::kDouble);
      if (!ProgressDue(step, it.num_batches())) continue;
      ProgressEvent ev;
      ev.phase = plan.phase;
      ev.epoch = run_epoch + 1;
      ev.total_epochs = total_epochs;
      ev.step = step;
      ev.steps_per_epoch = it.num_batches();
      ev.loss = loss.item<double>();
      ev.temperature = plan.temperature;
      ev.accuracy = last_hard_top1_;
      const double elapsed = Now() - start;
      ev.images_per_second = static_cast<double>(done_steps * t.batch_size()) / elapsed;
      ev.eta_seconds = elapsed / static_cast<double>(done_steps) *
                       static_cast<double>(run_steps_left - global - 1);
      Emit(ev);
    }
    const EpochScores scores = phase.EndEpoch();
    last_hard_top1_ = scores.hard_top1;
    metrics_.epochs.push_back(
        {run_epoch + 1, plan.phase,
         loss_sum.item<double>() / static_cast<double>(std::max<int64_t>(1, step)),
         plan.temperature, scores.soft_top1, scores.hard_top1});
    ProgressEvent ev;
    ev.phase = plan.phase;
    ev.epoch = run_epoch + 1;
    ev.total_epochs = total_epochs;
    ev.step = ev.steps_per_epoch = step;
    ev.loss = metrics_.epochs.back().train_loss;
    ev.temperature = plan.temperature;
    ev.accuracy = scores.hard_top1;
    ev.epoch_end = true;
    Emit(ev);
    if (absl::Status s = SaveEpoch(run_epoch + 1, phase.stage()); !s.ok()) return s;
  }
  return absl::OkStatus();
}

// Hard everywhere, batch-norm statistics re-estimated under the hard quantizer, final scores.
absl::Status Trainer::Finalize() {
  const v1::TrainingSettings& t = run_.spec.training();
  const int qn_epochs = std::max(0, t.epochs());
  QuantizedModel& qm = *quantized_;
  if (!qm.activation_quantizers().empty() && !calibrated_) {
    if (absl::Status s = Calibrate(); !s.ok()) return s;
  }
  qm.SetActivationsEnabled(true);
  qm.SetHard(true);
  qm.RefreshWeights();
  ProgressEvent fin;
  fin.phase = "finalize";
  fin.epoch = fin.total_epochs = std::max(0, t.pretrain_epochs()) + qn_epochs;
  fin.accuracy = last_hard_top1_;
  Emit(fin);
  const ForwardFn forward = [&](const torch::Tensor& x) { return qm.Forward(x); };
  if (metrics_.epochs.empty() || qn_epochs == 0) {
    qm.module().eval();
    metrics_.hard_top1 = Evaluate(forward, data_.test, t.batch_size(), device_).top1;
    metrics_.soft_top1 = metrics_.hard_top1;
  } else {
    metrics_.soft_top1 = metrics_.epochs.back().soft_top1;
    metrics_.hard_top1 = metrics_.epochs.back().hard_top1;
  }
  if (absl::Status s = ReestimateBatchNorm(qm.module(), forward, data_.train, t.batch_size(),
                                           t.seed(), device_, recipe_.bn_reestimate_batches);
      !s.ok()) {
    return s;
  }
  // The reported accuracy is the artifacts' own: evaluated in the layout they are saved in.
  SetLayout(false);
  qm.module().eval();
  const Accuracy final_acc = Evaluate(forward, data_.test, t.batch_size(), device_);
  metrics_.quantized_top1 = final_acc.top1;
  metrics_.quantized_top5 = final_acc.top5;
  return absl::OkStatus();
}

absl::Status Trainer::RestoreQuantized(const LoadedCheckpoint& ckpt) {
  const Checkpoint& c = ckpt.checkpoint;
  // Calibration may have made an activation quantizer signed, with another level count.
  for (size_t i = 0; i < quantized_->activation_quantizers().size(); ++i) {
    const std::string& name = quantized_->activation_quantizers()[i].name;
    auto levels = c.tensors.find("model/" + name + ".levels");
    auto thresholds = c.tensors.find("model/" + name + ".thresholds");
    if (levels != c.tensors.end() && thresholds != c.tensors.end()) {
      quantized_->SetActivationLevels(i, levels->second, thresholds->second);
    }
  }
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

absl::Status CalibrateActivations(QuantizedModel& qm, const Recipe& recipe,
                                  const std::function<std::optional<torch::Tensor>()>& next_batch) {
  torch::NoGradGuard no_grad;
  const bool was_training = qm.module().is_training();
  qm.module().eval();
  qm.SetActivationsEnabled(false);
  qm.SetCalibrating(true);
  qm.RefreshWeights();
  const size_t n = qm.activation_quantizers().size();
  std::vector<ActivationCalibrator> calibrators(
      n, ActivationCalibrator(recipe.calibration_percentile));
  std::vector<double> minimum(n, 0.0);
  for (int b = 0; b < recipe.calibration_batches; ++b) {
    std::optional<torch::Tensor> batch = next_batch();
    if (!batch) break;
    qm.Forward(*batch);
    const std::vector<torch::Tensor> seen = qm.TakeObservedActivations();
    for (size_t i = 0; i < seen.size(); ++i) {
      if (seen[i].numel() == 0) continue;
      if (absl::Status s = calibrators[i].Observe(seen[i].cpu()); !s.ok()) return s;
      minimum[i] = std::min(minimum[i], seen[i].min().item<double>());
    }
  }
  qm.SetCalibrating(false);
  for (size_t i = 0; i < n; ++i) {
    if (calibrators[i].batches() == 0) continue;  // never reached: keep the default range
    const bool is_signed = qm.spec().signed_activation_levels.defined() &&
                           minimum[i] < -recipe.signed_activation_minimum * calibrators[i].range();
    absl::StatusOr<QuantizerParams> p = InitActivationQuantizer(
        calibrators[i],
        (is_signed ? qm.spec().signed_activation_levels : qm.spec().activation_levels).cpu());
    if (!p.ok()) return p.status();
    qm.SetActivationLevels(i, p->levels, p->thresholds);
    qm.SetActivationQuantizer(i, p->alpha, p->beta, p->thresholds);
  }
  qm.module().train(was_training);
  return absl::OkStatus();
}

absl::Status Trainer::Calibrate() {
  BatchIterator it(data_.train, run_.spec.training().batch_size(), run_.spec.training().seed(),
                   /*epoch=*/1000003,
                   /*augment=*/false);
  const absl::Status s =
      CalibrateActivations(*quantized_, recipe_, [&]() -> std::optional<torch::Tensor> {
        std::optional<Batch> batch = it.Next();
        if (!batch) return std::nullopt;
        return batch->images.to(device_);
      });
  if (s.ok()) calibrated_ = true;
  return s;
}

}  // namespace qnet::engine
