// Model evaluation and the training losses the trainer shares between its phases: top-1/top-5
// accuracy, logits over a dataset, the distillation loss of the QN steps, and batch-norm
// re-estimation. Free functions of a forward function, so the float model, the soft QN model and
// the hard QN model are evaluated by the same code.
//
//   ForwardFn f = [&](const torch::Tensor& x) { return model.forward({x}).toTensor(); };
//   Accuracy a = Evaluate(f, splits.test, /*batch_size=*/256, torch::kCPU);
#ifndef QNET_WORKERS_ENGINE_TRAINING_EVALUATION_H_
#define QNET_WORKERS_ENGINE_TRAINING_EVALUATION_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <torch/script.h>
#include <torch/torch.h>

#include "absl/status/status.h"
#include "workers/engine/data/data.h"

namespace qnet::engine {

struct Accuracy {
  double top1 = 0, top5 = 0, loss = 0;
};

using ForwardFn = std::function<torch::Tensor(const torch::Tensor&)>;

// Top-1/top-5 (top-k with k = min(5, classes)) over `data`, in eval mode, without gradients. The
// counts stay on the device until the end: one synchronisation per evaluation, not per batch.
Accuracy Evaluate(const ForwardFn& forward, const TensorDataset& data, int64_t batch_size,
                  const torch::Device& device);

// Every sample's logits [N, classes] under `forward`, in dataset order, without gradients.
torch::Tensor Predict(const ForwardFn& forward, const TensorDataset& data, int64_t batch_size,
                      const torch::Device& device);

// The QN steps' loss: (1 - weight) * cross-entropy with the labels + weight * tau^2 *
// KL(teacher || student) on the logits softened by tau (tau^2 keeps the gradient's scale when
// tau changes). weight 0 or an undefined `teacher` gives the plain cross-entropy.
torch::Tensor DistillationLoss(const torch::Tensor& logits, const torch::Tensor& labels,
                               const torch::Tensor& teacher, double weight, double tau);

// Re-estimates the running statistics of every batch norm the forward pass uses: resets them and
// refills them with the plain average over `batches` training batches run through `forward` in
// train mode (no gradients). Writes only the buffers (running_mean, running_var,
// num_batches_tracked) and the momentum the transform routes every batch norm through
// (kBatchNormMomentumAttr, set to 1/k at batch k), so a momentum the model keeps as a constant (a
// scripted torch.nn.BatchNorm2d) or bakes into its graph (a traced one) is never written.
// FAILED_PRECONDITION for a model with batch norms that QuantizedModel::Create did not transform.
absl::Status ReestimateBatchNorm(torch::jit::Module& model, const ForwardFn& forward,
                                 const TensorDataset& train, int64_t batch_size, uint64_t seed,
                                 const torch::Device& device, int batches);

// Makes the named batch-norm submodules (paths from the root; each used once by the forward pass)
// the identity on the model's own activations in train mode as well as in eval mode: each one's
// running mean and variance become the per-channel mean and (biased) variance of its input over
// `batches` training batches run through the model in eval mode, its weight sqrt(var + eps) and
// its bias the mean. Batch norms restored behind folded convolutions (onnx/importer.h) start so,
// and training then renormalises from there. INVALID_ARGUMENT when a path is not a batch norm the
// forward pass uses.
absl::Status InitIdentityBatchNorms(torch::jit::Module& model,
                                    const std::vector<std::string>& paths,
                                    const TensorDataset& train, int64_t batch_size, uint64_t seed,
                                    const torch::Device& device, int batches);

}  // namespace qnet::engine

#endif  // QNET_WORKERS_ENGINE_TRAINING_EVALUATION_H_
