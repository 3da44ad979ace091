// Trains one job: optional full-precision pre-training, then the QN fine-tuning recipe
// (docs/METHOD.md): weights-only, activations-only (weights fixed), then joint phases over the QN
// steps, activation quantizers hard in the forward pass (Recipe says why), the loss distilled from
// the float model's logits (computed once, before the QN steps); temperature T = slope *
// (epoch + 1) interpolated per step; soft and hard evaluation every epoch; batch-norm
// re-estimation under the hard quantizer before the final evaluation. Both stages run through one
// step loop (RunEpochs) with the stage as a strategy (training_phases.h). Checkpoints after every
// epoch and resumes exactly from the newest valid one (data order and RNG derive from seed+epoch).
//
//   Trainer trainer(run, callbacks, splits, torch::kCPU, std::move(model));
//   if (absl::Status s = trainer.Run(); !s.ok()) return s;  // CANCELLED when should_stop said so
//   const JobMetrics& m = trainer.metrics();
//   QuantizedModel& q = trainer.quantized();  // hard mode, ready to export
#ifndef QNET_WORKERS_ENGINE_TRAINING_TRAINER_H_
#define QNET_WORKERS_ENGINE_TRAINING_TRAINER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include <torch/script.h>
#include <torch/torch.h>

#include "absl/status/status.h"
#include "workers/engine/data/data.h"
#include "workers/engine/job_run.h"
#include "workers/engine/training/checkpoint.h"
#include "workers/engine/training/evaluation.h"
#include "workers/engine/training/recipe.h"
#include "workers/engine/training/sgd.h"
#include "workers/engine/training/training_phases.h"
#include "workers/engine/transform/transform.h"

namespace qnet::engine {

// Calibrates every activation quantizer of `model` on up to recipe.calibration_batches batches
// from `next_batch` (nullopt: no more): the range at the recipe's percentile, and signed levels
// where the smallest input seen is below -recipe.signed_activation_minimum x that range
// (docs/METHOD.md). Quantizers no batch reached keep their range; activations stay disabled and
// the module's training mode is restored. The trainer calibrates through this, on training batches.
absl::Status CalibrateActivations(QuantizedModel& model, const Recipe& recipe,
                                  const std::function<std::optional<torch::Tensor>()>& next_batch);

class Trainer {
 public:
  // Receives the full-precision model once it is trained (before QN), when set.
  using FloatModelSink = std::function<absl::Status(const torch::jit::Module&)>;

  // `run.spec` has its defaults resolved (job::WithDefaults).
  Trainer(const JobRun& run, const JobCallbacks& callbacks, const DatasetSplits& data,
          const torch::Device& device, torch::jit::Module model,
          FloatModelSink on_float_model = nullptr);
  ~Trainer();

  // Runs (or resumes) the whole training. CANCELLED when should_stop returned true.
  absl::Status Run();

  const JobMetrics& metrics() const { return metrics_; }
  // After Run: the quantized model, in hard mode with re-estimated batch-norm statistics.
  QuantizedModel& quantized() { return *quantized_; }
  // The model as given: the structure the artifacts keep (after pre-training it holds the float
  // weights; a run resumed past pre-training only restores the quantized model).
  torch::jit::Module& float_model() { return model_; }

 private:
  // The one step loop: epochs [first_epoch, epochs) of `phase`, numbered after epoch_offset
  // earlier epochs of the run.
  absl::Status RunEpochs(EpochPhase& phase, int first_epoch, int epochs, int epoch_offset);
  absl::Status TrainFloat(int completed, const std::string& stage,
                          const std::optional<LoadedCheckpoint>& resume);
  absl::Status Finalize();
  absl::Status Calibrate();
  // The float and the quantized model's convolution weights (and latents) channels-last or
  // contiguous (memory_layout.h).
  void SetLayout(bool channels_last);
  absl::Status SaveEpoch(int epoch, const std::string& stage);
  absl::Status RestoreQuantized(const LoadedCheckpoint& ckpt);
  std::string Fingerprint() const;
  std::string MetaJson(int epoch, const std::string& stage) const;
  // Whether the step's progress is reported: the first and last step of an epoch, else at most
  // every 0.2 s. Reading a step's loss synchronises with the device, so only reported ones do.
  bool ProgressDue(int64_t step, int64_t steps) const;
  void Emit(ProgressEvent event);
  bool Stopping() const;

  JobRun run_;
  JobCallbacks callbacks_;
  FloatModelSink on_float_model_;
  const DatasetSplits& data_;
  torch::Device device_;
  Recipe recipe_;
  torch::jit::Module model_;
  torch::Tensor teacher_logits_;  // [train size, classes] on device_; undefined: no distillation
  std::unique_ptr<QuantizedModel> quantized_;
  JobMetrics metrics_;
  bool calibrated_ = false;
  bool channels_last_ = false;  // training runs NHWC (memory_layout.h)
  double last_hard_top1_ = -1;
  int64_t steps_per_epoch_ = 0;
  std::unique_ptr<Sgd> sgd_;
  double last_emit_ = -1;
};

}  // namespace qnet::engine

#endif  // QNET_WORKERS_ENGINE_TRAINING_TRAINER_H_
