#include "workers/engine/training/training_phases.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "workers/engine/training/evaluation.h"

namespace qnet::engine {

PretrainPhase::PretrainPhase(torch::jit::Module& model, const Recipe& recipe,
                             const TensorDataset& test, int64_t batch_size,
                             const torch::Device& device, int64_t total_steps)
    : model_(model),
      recipe_(recipe),
      test_(test),
      batch_size_(batch_size),
      device_(device),
      total_steps_(std::max<int64_t>(1, total_steps)) {}

void PretrainPhase::BeginEpoch() { model_.train(true); }

absl::StatusOr<StepPlan> PretrainPhase::Prepare(int64_t step) {
  // Cosine decay over all pre-training steps.
  const double lr =
      0.5 * recipe_.pretrain_lr *
      (1 + std::cos(M_PI * static_cast<double>(step) / static_cast<double>(total_steps_)));
  return StepPlan{.phase = "pretrain", .learning_rate = lr, .groups = {}, .temperature = 0};
}

torch::Tensor PretrainPhase::Loss(const Batch& batch) {
  const torch::Tensor logits = model_.forward({batch.images.to(device_)}).toTensor();
  return torch::cross_entropy_loss(logits, batch.labels.to(device_));
}

EpochScores PretrainPhase::EndEpoch() {
  model_.eval();
  const Accuracy acc =
      Evaluate([&](const torch::Tensor& x) { return model_.forward({x}).toTensor(); }, test_,
               batch_size_, device_);
  return {acc.top1, acc.top1};
}

QnPhase::QnPhase(QuantizedModel& model, const Recipe& recipe, const torch::Tensor& teacher_logits,
                 const TensorDataset& test, int64_t batch_size, const torch::Device& device,
                 int64_t steps_per_epoch, int64_t total_steps,
                 std::function<absl::Status()> ensure_calibrated)
    : model_(model),
      recipe_(recipe),
      teacher_logits_(teacher_logits),
      test_(test),
      batch_size_(batch_size),
      device_(device),
      steps_per_epoch_(std::max<int64_t>(1, steps_per_epoch)),
      total_steps_(std::max<int64_t>(1, total_steps)),
      activations_(!model.activation_quantizers().empty()),
      ensure_calibrated_(std::move(ensure_calibrated)) {}

absl::StatusOr<StepPlan> QnPhase::Prepare(int64_t step) {
  const Phase phase = PhaseAt(step, total_steps_, activations_);
  if (phase != Phase::kWeights) {
    if (absl::Status s = ensure_calibrated_(); !s.ok()) return s;
  }
  model_.module().train(true);
  model_.SetHard(false, recipe_.hard_forward_activations);
  model_.SetActivationsEnabled(phase != Phase::kWeights);
  const double temperature = ScheduleTemperature(recipe_, step, steps_per_epoch_);
  model_.SetTemperature(
      std::min(recipe_.temperature_cap, temperature * recipe_.weight_temperature_factor),
      std::min(recipe_.temperature_cap, temperature * recipe_.activation_temperature_factor));
  model_.RefreshWeights();
  return StepPlan{.phase = PhaseName(phase),
                  .learning_rate = QnLearningRate(recipe_, step, total_steps_, activations_),
                  .groups = ActiveGroups(phase),
                  .temperature = temperature};
}

torch::Tensor QnPhase::Loss(const Batch& batch) {
  const torch::Tensor teacher = teacher_logits_.defined()
                                    ? teacher_logits_.index_select(0, batch.indices.to(device_))
                                    : torch::Tensor();
  return DistillationLoss(model_.Forward(batch.images.to(device_)), batch.labels.to(device_),
                          teacher, recipe_.distill_weight, recipe_.distill_temperature);
}

void QnPhase::ScaleGradients() { model_.ScaleStepSizeGradients(); }

EpochScores QnPhase::EndEpoch() {
  const ForwardFn forward = [&](const torch::Tensor& x) { return model_.Forward(x); };
  model_.module().eval();
  model_.SetHard(false);
  model_.RefreshWeights();
  const Accuracy soft = Evaluate(forward, test_, batch_size_, device_);
  model_.SetHard(true);
  model_.RefreshWeights();
  const Accuracy hard = Evaluate(forward, test_, batch_size_, device_);
  model_.SetHard(false);
  return {soft.top1, hard.top1};
}

}  // namespace qnet::engine
