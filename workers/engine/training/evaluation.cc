#include "workers/engine/training/evaluation.h"

#include <algorithm>
#include <cmath>
#include <optional>
#include <string>
#include <vector>

namespace qnet::engine {
namespace {

bool IsBatchNorm(const torch::jit::Module& m) {
  const std::string type = m.type()->name() ? m.type()->name()->qualifiedName() : "";
  return type.ends_with("BatchNorm2d") || type.ends_with("BatchNorm1d")
             ? m.hasattr("running_mean") && m.hasattr("running_var")
             : false;
}

}  // namespace

Accuracy Evaluate(const ForwardFn& forward, const TensorDataset& data, int64_t batch_size,
                  const torch::Device& device) {
  torch::NoGradGuard no_grad;
  Accuracy acc;
  const auto counter = torch::TensorOptions().dtype(torch::kLong).device(device);
  torch::Tensor correct1 = torch::zeros({}, counter), correct5 = torch::zeros({}, counter);
  torch::Tensor loss = torch::zeros({}, counter.dtype(torch::kDouble));
  int64_t seen = 0;
  BatchIterator it(data, batch_size, /*seed=*/0, /*epoch=*/0, /*augment=*/false);
  while (std::optional<Batch> batch = it.Next()) {
    const torch::Tensor labels = batch->labels.to(device);
    const torch::Tensor logits = forward(batch->images.to(device));
    const int64_t k = std::min<int64_t>(5, logits.size(1));
    const torch::Tensor top = std::get<1>(logits.topk(k, 1));
    const torch::Tensor hits = top.eq(labels.unsqueeze(1));
    correct1 += hits.select(1, 0).sum();
    correct5 += hits.any(1).sum();
    loss += torch::cross_entropy_loss(logits, labels, {}, at::Reduction::Sum).to(torch::kDouble);
    seen += labels.size(0);
  }
  if (seen > 0) {
    acc.top1 = static_cast<double>(correct1.item<int64_t>()) / static_cast<double>(seen);
    acc.top5 = static_cast<double>(correct5.item<int64_t>()) / static_cast<double>(seen);
    acc.loss = loss.item<double>() / static_cast<double>(seen);
  }
  return acc;
}

torch::Tensor Predict(const ForwardFn& forward, const TensorDataset& data, int64_t batch_size,
                      const torch::Device& device) {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> out;
  BatchIterator it(data, batch_size);  // row order: the logits are kept per row
  while (std::optional<Batch> batch = it.Next()) out.push_back(forward(batch->images.to(device)));
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
    // A scripted torch.nn.BatchNorm2d keeps momentum as a class constant, which hasattr also
    // reports but setattr refuses: look for the constant first.
    if (m.type()->hasConstant("momentum")) {
      const c10::IValue v = m.type()->getConstant("momentum");
      if (v.isDouble()) bn.momentum = v.toDouble();
      if (v.isNone()) bn.cumulative = true;
    } else if (m.hasattr("momentum")) {
      const c10::IValue v = m.attr("momentum");
      bn.saved_momentum = v;
      if (v.isDouble()) {
        bn.settable = true;
      } else if (v.isNone()) {
        bn.cumulative = true;
      }
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

}  // namespace qnet::engine
