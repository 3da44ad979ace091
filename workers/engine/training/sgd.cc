#include "workers/engine/training/sgd.h"

#include <utility>

namespace qnet::engine {

Sgd::Sgd(std::vector<ParamGroup> groups, double momentum)
    : groups_(std::move(groups)), momentum_(momentum) {
  size_t n = 0;
  for (const ParamGroup& g : groups_) n += g.params.size();
  buffers_.resize(n);
}

void Sgd::Step(double lr, const std::vector<bool>& active) {
  torch::NoGradGuard no_grad;
  size_t index = 0;
  for (size_t gi = 0; gi < groups_.size(); ++gi) {
    const ParamGroup& group = groups_[gi];
    const bool on = active.empty() || (gi < active.size() && active[gi]);
    for (const torch::Tensor& p : group.params) {
      torch::Tensor& buf = buffers_[index++];
      if (!on || !p.grad().defined()) continue;
      torch::Tensor d = p.grad();
      if (group.weight_decay != 0) d = d + group.weight_decay * p;
      if (!buf.defined()) {
        buf = d.clone();
      } else {
        buf.mul_(momentum_).add_(d);
      }
      p.sub_(lr * group.lr_scale * buf);
    }
  }
}

void Sgd::ZeroGrad() {
  for (const ParamGroup& g : groups_) {
    for (const torch::Tensor& p : g.params) {
      if (p.grad().defined()) p.mutable_grad() = torch::Tensor();
    }
  }
}

std::vector<torch::Tensor> Sgd::AllParameters() const {
  std::vector<torch::Tensor> out;
  for (const ParamGroup& g : groups_) out.insert(out.end(), g.params.begin(), g.params.end());
  return out;
}

double ClipGradNorm(const std::vector<torch::Tensor>& params, double max_norm) {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> norms;
  for (const torch::Tensor& p : params) {
    if (p.grad().defined()) norms.push_back(p.grad().detach().to(torch::kDouble).norm());
  }
  if (norms.empty()) return 0;
  // Summed in ascending order, so the total does not depend on the order the model lists its
  // parameters in (an ONNX import lists them in graph order, the same model scripted in module
  // order): the same model clips identically however it was brought. One device-to-host read.
  const double norm = std::get<0>(torch::stack(norms).sort()).norm().item<double>();
  if (norm > max_norm) {
    const double scale = max_norm / (norm + 1e-6);
    for (const torch::Tensor& p : params) {
      if (p.grad().defined()) p.mutable_grad().mul_(scale);
    }
  }
  return norm;
}

}  // namespace qnet::engine
