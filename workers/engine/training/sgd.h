// SGD with momentum and per-group weight decay, written out so that its whole state (one momentum
// buffer per parameter, in a fixed order) checkpoints and resumes exactly, and so that a group can
// be frozen for a phase of the QN recipe without losing its momentum.
//
//   Sgd sgd({{latents, /*weight_decay=*/1e-4}, {quantizer_params, 0.0}}, /*momentum=*/0.9);
//   loss.backward();
//   ClipGradNorm(sgd.AllParameters(), 5.0);
//   sgd.Step(/*lr=*/1e-3, /*active_groups=*/{true, true});
//   sgd.ZeroGrad();
#ifndef QNET_WORKERS_ENGINE_TRAINING_SGD_H_
#define QNET_WORKERS_ENGINE_TRAINING_SGD_H_

#include <vector>

#include <torch/torch.h>

namespace qnet::engine {

struct ParamGroup {
  std::vector<torch::Tensor> params;
  double weight_decay = 0;
  double lr_scale = 1;  // the group's learning rate is lr * lr_scale
};

class Sgd {
 public:
  Sgd(std::vector<ParamGroup> groups, double momentum);

  // Updates the parameters of groups whose `active` entry is true (all when `active` is empty):
  // v = momentum*v + (g + wd*p); p -= lr*v. Parameters without a gradient are skipped.
  void Step(double lr, const std::vector<bool>& active = {});
  void ZeroGrad();

  std::vector<torch::Tensor> AllParameters() const;
  const std::vector<ParamGroup>& groups() const { return groups_; }
  // Momentum buffers in group then parameter order; undefined until a parameter's first update.
  std::vector<torch::Tensor>& buffers() { return buffers_; }

 private:
  std::vector<ParamGroup> groups_;
  double momentum_;
  std::vector<torch::Tensor> buffers_;
};

// Scales the gradients so their global L2 norm is at most max_norm; returns the norm before.
double ClipGradNorm(const std::vector<torch::Tensor>& params, double max_norm);

}  // namespace qnet::engine

#endif  // QNET_WORKERS_ENGINE_TRAINING_SGD_H_
