// Internal to the quantizer (quantizer.cc; tests): the x-sized tensors a CPU Quantize call needs
// in training (its output, the derivative sums its backward reads, the gradient for x), kept from
// one call to the next on the same leaf x, which is how a training loop quantizes a latent weight
// every step. Fresh tensors of tens of MB come from the system as untouched pages, and faulting
// those in cost a ResNet-18 step at W4 about as much as one pass of the kernel over its weights.
//
//   QuantizeBuffers buffers;
//   torch::Tensor y = buffers.Take(x);  // x's shape and dtype, over a storage nobody else holds
#ifndef QNET_WORKERS_ENGINE_QUANTIZATION_QUANTIZE_BUFFERS_H_
#define QNET_WORKERS_ENGINE_QUANTIZATION_QUANTIZE_BUFFERS_H_

#include <torch/torch.h>

#include <mutex>
#include <vector>

namespace qnet::engine {

// The storages one quantizer reuses. A storage is handed out again only once nothing else holds
// it: the weight a module kept from the last step, a tensor still saved in an autograd graph, or a
// .grad the optimizer has not dropped is never overwritten. Thread-safe.
class QuantizeBuffers : public torch::CustomClassHolder {
 public:
  // Most storages kept: an output still held while its successor is computed, the new output, the
  // derivative sums and the gradient.
  static constexpr size_t kMaxKept = 4;

  // A tensor with like's shape, strides, dtype and device (like is dense; contents undefined, not
  // requiring grad): over a kept storage that nothing else holds, else a new one, kept while fewer
  // than kMaxKept are.
  torch::Tensor Take(const torch::Tensor& like);

  // How many storages are kept.
  size_t kept();

 private:
  std::mutex mu_;
  std::vector<c10::Storage> kept_;
};

// The buffers of the calls on leaf x (created on the first), kept while x lives: a latent weight
// quantized every step gets its storages back each step.
c10::intrusive_ptr<QuantizeBuffers> BuffersForLeaf(const torch::Tensor& x);

}  // namespace qnet::engine

#endif  // QNET_WORKERS_ENGINE_QUANTIZATION_QUANTIZE_BUFFERS_H_
