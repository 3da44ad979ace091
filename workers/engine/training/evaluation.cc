#include "workers/engine/training/evaluation.h"

#include <algorithm>
#include <optional>
#include <vector>

#include "workers/engine/transform/transform.h"

namespace qnet::engine {

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

absl::Status ReestimateBatchNorm(torch::jit::Module& model, const ForwardFn& forward,
                                 const TensorDataset& train, int64_t batch_size, uint64_t seed,
                                 const torch::Device& device, int batches) {
  const std::vector<torch::jit::Module> bns = FindBatchNorms(model);
  if (bns.empty() || batches <= 0) return absl::OkStatus();
  if (!model.hasattr(kBatchNormMomentumAttr)) {
    return absl::FailedPreconditionError(
        "batch-norm re-estimation needs a model transformed by QuantizedModel::Create");
  }
  torch::NoGradGuard no_grad;
  for (const torch::jit::Module& bn : bns) {
    bn.attr("running_mean").toTensor().zero_();
    bn.attr("running_var").toTensor().fill_(1);
    if (bn.hasattr("num_batches_tracked") && bn.attr("num_batches_tracked").isTensor()) {
      bn.attr("num_batches_tracked").toTensor().zero_();
    }
  }
  const bool was_training = model.is_training();
  model.train(true);
  BatchIterator it(train, batch_size, seed, /*epoch=*/2000003, /*augment=*/false);
  for (int done = 1; done <= batches; ++done) {
    std::optional<Batch> batch = it.Next();
    if (!batch) break;
    // Momentum 1/k: after k batches each statistic is the plain average of the k batches'.
    model.setattr(kBatchNormMomentumAttr, 1.0 / done);
    forward(batch->images.to(device));
  }
  model.setattr(kBatchNormMomentumAttr, -1.0);
  model.train(was_training);
  return absl::OkStatus();
}

}  // namespace qnet::engine
