#include "workers/engine/training/recipe.h"

#include <algorithm>

namespace qnet::engine {

const char* PhaseName(Phase p) {
  switch (p) {
    case Phase::kWeights:
      return "weights";
    case Phase::kJoint:
      return "joint";
  }
  return "";
}

Phase PhaseAt(int64_t step, int64_t total, bool activations) {
  if (!activations) return Phase::kWeights;
  return 3 * step < total ? Phase::kWeights : Phase::kJoint;
}

double PhaseProgress(int64_t step, int64_t total, bool activations) {
  if (!activations) return static_cast<double>(step) / static_cast<double>(total);
  if (PhaseAt(step, total, true) == Phase::kWeights) {
    return static_cast<double>(3 * step) / static_cast<double>(total);
  }
  return static_cast<double>(3 * step - total) / static_cast<double>(2 * total);
}

std::vector<bool> ActiveGroups(Phase p) {
  switch (p) {
    case Phase::kWeights:
      return {true, true, true, false};
    case Phase::kJoint:
      return {true, true, true, true};
  }
  return {};
}

Recipe ResolveRecipe(const v1::JobSpec& spec, bool augment) {
  const v1::TrainingSettings& t = spec.training();
  Recipe r;
  if (t.learning_rate() > 0) r.qn_lr = t.learning_rate();
  if (t.temperature_slope() > 0) r.temperature_slope = t.temperature_slope();
  if (t.has_distill_weight()) r.distill_weight = t.distill_weight();
  r.augment = augment;
  return r;
}

double ScheduleTemperature(const Recipe& recipe, int64_t step, int64_t steps_per_epoch) {
  const double epochs = 1.0 + static_cast<double>(step) / static_cast<double>(steps_per_epoch);
  return std::min(recipe.temperature_cap,
                  recipe.temperature_slope * std::min(recipe.temperature_plateau, epochs));
}

double QnLearningRate(const Recipe& recipe, int64_t step, int64_t total, bool activations) {
  return recipe.qn_lr * (PhaseProgress(step, total, activations) < 0.7 ? 1.0 : 0.1);
}

}  // namespace qnet::engine
