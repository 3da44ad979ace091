// The QN fine-tuning recipe: its settings (each with the measurement behind it, see
// docs/METHOD.md) and its schedule: the QN steps split into a weights phase and a joint phase,
// the temperature as a function of the step, and the learning rate within a phase.
//
//   Recipe r = ResolveRecipe(effective_spec, /*augment=*/false);
//   Phase p = PhaseAt(step, total_steps, /*activations=*/true);
//   double t = ScheduleTemperature(r, step, steps_per_epoch);
#ifndef QNET_WORKERS_ENGINE_TRAINING_RECIPE_H_
#define QNET_WORKERS_ENGINE_TRAINING_RECIPE_H_

#include <cstdint>
#include <vector>

#include "qnet/v1/job.pb.h"

namespace qnet::engine {

// The recipe's choices, resolved from a job spec (0 or unset = the recipe's default).
struct Recipe {
  double pretrain_lr = 0.1;
  double pretrain_weight_decay = 5e-4;
  // The paper suggests about 1e-3, for runs of many epochs. On the short budgets jobs get, 1e-2
  // recovers more than 3e-3 (ResNet-20 W2A2 on 5,000 Fashion-MNIST images: 86.6% against 85.2%;
  // LeNet-5 pre-trained for one epoch: 73.0% against 70.6%), and 3e-2 diverged on that LeNet-5
  // (23% from the labels alone, where 1e-2 gives 74%). docs/BENCHMARKS.md has the commands.
  double qn_lr = 0.01;
  double quantizer_lr_scale = 1.0;  // quantizer alpha/beta learn at qn_lr * this
  double latent_weight_decay = 1e-4;
  double other_weight_decay = 1e-4;
  double momentum = 0.9;
  double clip_norm = 5.0;
  double temperature_slope = 10.0;
  // The schedule T = slope * (epoch + 1) drives both quantizer kinds, scaled per kind.
  // Weights run 5x steeper: their thresholds sit in the dense middle of the weight distribution,
  // so at T itself many weights stay far from their hard value and the hard model is not the
  // trained one. Activations run 4x flatter: at T their gradient is a narrow spike at each
  // threshold, and the phases training activation quantizers raised the training loss instead of
  // lowering it (ResNet-20 W2A2 on Fashion-MNIST: 68.9% at T, 85.5% at T/4; docs/BENCHMARKS.md).
  double weight_temperature_factor = 5.0;
  double activation_temperature_factor = 0.25;
  // Activation quantizers train with the hard step in the forward pass and the sigmoid's gradient
  // at their temperature in the backward (the op's hard mode). A soft forward trained a model
  // that was not the one deployed (ResNet-20 W2A2: 88.4% soft against 81.1% hard in the same
  // epoch; now 87.9% and 87.1%). Weights stay soft (docs/BENCHMARKS.md).
  bool hard_forward_activations = true;
  // The schedule stops growing at slope * temperature_plateau (the end of a 3-epoch run). The
  // published schedule grows to the cap, but with the per-kind factors above, a 6-epoch ResNet-20
  // W2A2 run diverged in its joint phase at T = 50 to 70 (hard accuracy 12% after epoch 5, 64.8%
  // at the end, against 87.0% after 3 epochs).
  double temperature_plateau = 4.0;
  double temperature_cap = 2000.0;
  // QN steps learn from the float model's predictions as well as the labels (DistillationLoss).
  // The teacher's logits are computed once, on the training images as stored (un-augmented).
  // ResNet-20 W2A2 on 5,000 Fashion-MNIST images: 84.6% from the labels alone
  // (--distill-weight 0), 86.6% with these defaults. A weak teacher costs instead: LeNet-5
  // pre-trained for one epoch on 6,000 images, 72.6% against 74.4% (means of three seeds;
  // docs/BENCHMARKS.md).
  double distill_weight = 0.5;
  double distill_temperature = 2.0;
  double calibration_percentile = 99.9;
  int calibration_batches = 10;
  // An activation quantizer's levels are signed when the smallest input calibration saw lies
  // below -signed_activation_minimum x its calibrated range: clearly negative (after SiLU,
  // Hardswish, GELU, a residual add, LayerNorm), not rounding noise around a ReLU's zero.
  double signed_activation_minimum = 0.01;
  int bn_reestimate_batches = 40;
  bool augment = false;
};
Recipe ResolveRecipe(const v1::JobSpec& spec, bool augment);

enum class Phase { kWeights, kJoint };

const char* PhaseName(Phase p);

// The first third of the QN steps trains the weights only, the rest weights and activation
// quantizers together. Per step rather than per epoch, so a single QN epoch still runs both
// phases. Without activation quantizers every step trains the weights. A third phase between the
// two that froze the weights while the activation quantizers trained did worse on the validation
// split (ResNet-20 W2A2: 87.23% against 87.53%, mean of three seeds; docs/BENCHMARKS.md).
Phase PhaseAt(int64_t step, int64_t total, bool activations);

// Progress in [0, 1) within the step's phase.
double PhaseProgress(int64_t step, int64_t total, bool activations);

// The QN optimizer's parameter groups, in this order.
enum Group { kOther = 0, kLatents = 1, kWeightQuantizers = 2, kActivationQuantizers = 3 };

// Which groups a phase trains.
std::vector<bool> ActiveGroups(Phase p);

// The schedule's T at `step` (0-based over the QN steps): slope * (epoch + 1), interpolated per
// step, held at slope * temperature_plateau and capped at temperature_cap.
double ScheduleTemperature(const Recipe& recipe, int64_t step, int64_t steps_per_epoch);

// The learning rate of a QN step: qn_lr, a tenth of it after 70% of the step's phase.
double QnLearningRate(const Recipe& recipe, int64_t step, int64_t total, bool activations);

}  // namespace qnet::engine

#endif  // QNET_WORKERS_ENGINE_TRAINING_RECIPE_H_
