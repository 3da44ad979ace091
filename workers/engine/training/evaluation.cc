#include "workers/engine/training/evaluation.h"

#include <algorithm>
#include <map>
#include <optional>
#include <utility>
#include <vector>

#include <torch/csrc/jit/api/function_impl.h>

#include "absl/strings/str_cat.h"
#include "workers/engine/transform/model_graph.h"
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

absl::Status InitIdentityBatchNorms(torch::jit::Module& model,
                                    const std::vector<std::string>& paths,
                                    const TensorDataset& train, int64_t batch_size, uint64_t seed,
                                    const torch::Device& device, int batches) {
  if (paths.empty()) return absl::OkStatus();
  // A copy of the forward graph that returns the batch norms' inputs instead of the logits: every
  // statistic comes from one eval-mode pass, in which each batch norm is still the identity.
  std::shared_ptr<torch::jit::Graph> graph = InlinedForwardCopy(model);
  std::map<std::string, torch::jit::Value*> inputs;
  for (const BatchNormUse& use : BatchNormUses(*graph))
    inputs.emplace(use.path, use.node->input(0));
  std::vector<torch::jit::Value*> wanted;
  for (const std::string& path : paths) {
    auto it = inputs.find(path);
    if (it == inputs.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("'", path, "' is no batch norm that the model's forward pass uses"));
    }
    wanted.push_back(it->second);
  }
  graph->eraseOutput(0);
  graph->registerOutput(graph->insertNode(graph->createTuple(wanted))->output());
  torch::jit::GraphFunction bn_inputs("qnet_batch_norm_inputs", graph, nullptr);

  torch::NoGradGuard no_grad;
  const bool was_training = model.is_training();
  model.eval();
  // Per batch norm and channel: the values seen, their sum and their sum of squares.
  std::vector<int64_t> count(paths.size(), 0);
  std::vector<torch::Tensor> sum(paths.size()), square_sum(paths.size());
  BatchIterator it(train, batch_size, seed, /*epoch=*/3000003, /*augment=*/false);
  for (int b = 0; b < batches; ++b) {
    std::optional<Batch> batch = it.Next();
    if (!batch) break;
    torch::jit::Stack stack{model._ivalue(), batch->images.to(device)};
    bn_inputs.run(stack);
    const std::vector<c10::IValue>& seen = stack.back().toTupleRef().elements();
    for (size_t i = 0; i < seen.size(); ++i) {
      const torch::Tensor x = seen[i].toTensor().to(torch::kDouble).transpose(0, 1).flatten(1);
      count[i] += x.size(1);
      sum[i] = sum[i].defined() ? sum[i] + x.sum(1) : x.sum(1);
      square_sum[i] =
          square_sum[i].defined() ? square_sum[i] + x.square().sum(1) : x.square().sum(1);
    }
  }
  model.train(was_training);
  for (size_t i = 0; i < paths.size(); ++i) {
    if (count[i] == 0) continue;  // no data: it stays the eval-mode identity
    absl::StatusOr<torch::jit::Module> bn = SubmoduleAt(model, paths[i]);
    if (!bn.ok()) return bn.status();
    const double eps = bn->attr("eps").toDouble();
    const torch::Tensor mean = sum[i] / static_cast<double>(count[i]);
    const torch::Tensor var =
        (square_sum[i] / static_cast<double>(count[i]) - mean.square()).clamp_min(0);
    for (const auto& [name, value] : {std::pair<const char*, torch::Tensor>{"running_mean", mean},
                                      {"running_var", var},
                                      {"weight", (var + eps).sqrt()},
                                      {"bias", mean}}) {
      const torch::Tensor dst = bn->attr(name).toTensor();
      dst.copy_(value.to(dst.device(), dst.scalar_type()));
    }
  }
  return absl::OkStatus();
}

}  // namespace qnet::engine
