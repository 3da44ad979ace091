// The phases of training as strategies for the trainer's one step loop: full-precision
// pre-training and QN fine-tuning differ only in how a step is set up, what its loss is and how an
// epoch is scored; batching, the optimizer step, clipping, progress, records and checkpoints are
// the loop's (Trainer::RunEpochs).
//
//   PretrainPhase phase(model, recipe, data.test, batch_size, device, total_steps);
//   absl::StatusOr<StepPlan> plan = phase.Prepare(step);
//   torch::Tensor loss = phase.Loss(batch);
#ifndef QNET_WORKERS_ENGINE_TRAINING_TRAINING_PHASES_H_
#define QNET_WORKERS_ENGINE_TRAINING_TRAINING_PHASES_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <torch/script.h>
#include <torch/torch.h>

#include "absl/status/statusor.h"
#include "workers/engine/data/data.h"
#include "workers/engine/training/recipe.h"
#include "workers/engine/transform/transform.h"

namespace qnet::engine {

// How the loop runs one step.
struct StepPlan {
  std::string phase;  // reported: "pretrain", "weights", "joint"
  double learning_rate = 0;
  std::vector<bool> groups;  // optimizer groups to step; empty: all
  double temperature = 0;    // the schedule's T (0 outside QN steps)
};

struct EpochScores {
  double soft_top1 = 0, hard_top1 = 0;
};

class EpochPhase {
 public:
  virtual ~EpochPhase() = default;
  // The checkpoint stage this phase's epochs are saved under.
  virtual const char* stage() const = 0;
  virtual void BeginEpoch() {}
  // Sets the model up for `step` (0-based over the phase's steps).
  virtual absl::StatusOr<StepPlan> Prepare(int64_t step) = 0;
  // The batch's loss, on the device, with its graph.
  virtual torch::Tensor Loss(const Batch& batch) = 0;
  // Rescales gradients per parameter after clipping, before the optimizer's step.
  virtual void ScaleGradients() {}
  // Scores the model on the test split after an epoch.
  virtual EpochScores EndEpoch() = 0;
};

// Full-precision training of the model as given: cross-entropy, cosine-decayed learning rate.
class PretrainPhase : public EpochPhase {
 public:
  // `model` must outlive the phase.
  PretrainPhase(torch::jit::Module& model, const Recipe& recipe, const TensorDataset& test,
                int64_t batch_size, const torch::Device& device, int64_t total_steps);
  const char* stage() const override { return "pretrain"; }
  void BeginEpoch() override;
  absl::StatusOr<StepPlan> Prepare(int64_t step) override;
  torch::Tensor Loss(const Batch& batch) override;
  EpochScores EndEpoch() override;

 private:
  torch::jit::Module& model_;
  const Recipe& recipe_;
  const TensorDataset& test_;
  int64_t batch_size_;
  torch::Device device_;
  int64_t total_steps_;
};

// QN fine-tuning: weight, activation and joint phases over the steps, the temperature schedule,
// distillation from the float model's logits. Calibrates the activation quantizers (through
// `ensure_calibrated`) before the first step that uses them.
class QnPhase : public EpochPhase {
 public:
  // Everything referenced must outlive the phase; `teacher_logits` ([train size, classes] on the
  // device, or undefined for no distillation) is read at every step.
  QnPhase(QuantizedModel& model, const Recipe& recipe, const torch::Tensor& teacher_logits,
          const TensorDataset& test, int64_t batch_size, const torch::Device& device,
          int64_t steps_per_epoch, int64_t total_steps,
          std::function<absl::Status()> ensure_calibrated);
  const char* stage() const override { return "qn"; }
  absl::StatusOr<StepPlan> Prepare(int64_t step) override;
  torch::Tensor Loss(const Batch& batch) override;
  // Each quantizer's alpha at its StepSizeLrFactor (levels.h).
  void ScaleGradients() override;
  // Soft and hard top-1: the gap between them is the train/deploy mismatch to watch.
  EpochScores EndEpoch() override;

 private:
  QuantizedModel& model_;
  const Recipe& recipe_;
  const torch::Tensor& teacher_logits_;
  const TensorDataset& test_;
  int64_t batch_size_;
  torch::Device device_;
  int64_t steps_per_epoch_, total_steps_;
  bool activations_;
  std::function<absl::Status()> ensure_calibrated_;
};

}  // namespace qnet::engine

#endif  // QNET_WORKERS_ENGINE_TRAINING_TRAINING_PHASES_H_
