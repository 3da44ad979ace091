// Internal declarations shared by quantizer.cc and quantizer_cuda.cu: the fused CUDA kernels'
// host entry points and a test hook that pins the CPU kernel's instruction set. Not part of the
// engine's API; include quantizer.h instead.
//
//   // In quantizer.cc, for a CUDA tensor x (only when built with QNET_WITH_CUDA):
//   torch::Tensor y = internal::QuantizeForwardCuda(x, alpha, beta, levels, thresholds, 20.0,
//   false); internal::QuantizeGrads g = internal::QuantizeBackwardCuda(grad_y, x, alpha, beta,
//   levels,
//                                                              thresholds, 20.0, false, true,
//                                                              false);
#ifndef QNET_WORKERS_ENGINE_QUANTIZATION_QUANTIZER_KERNELS_H_
#define QNET_WORKERS_ENGINE_QUANTIZATION_QUANTIZER_KERNELS_H_

#include <torch/torch.h>

namespace qnet::engine::internal {

// Gradients from one backward pass. Undefined tensors where no gradient was asked for.
struct QuantizeGrads {
  torch::Tensor x;           // shaped like x
  torch::Tensor alpha;       // shaped and typed like alpha
  torch::Tensor beta;        // shaped and typed like beta
  torch::Tensor thresholds;  // shaped and typed like thresholds
};

#ifdef QNET_WITH_CUDA
// x: contiguous CUDA float or double tensor. alpha, beta, levels, thresholds: any device and
// floating dtype (moved to x's device and dtype here). Arguments are validated by the caller.
torch::Tensor QuantizeForwardCuda(const torch::Tensor& x, const torch::Tensor& alpha,
                                  const torch::Tensor& beta, const torch::Tensor& levels,
                                  const torch::Tensor& thresholds, double temperature, bool hard);

// One pass over x and grad_y (both contiguous, on the same CUDA device, dtype of x).
QuantizeGrads QuantizeBackwardCuda(const torch::Tensor& grad_y, const torch::Tensor& x,
                                   const torch::Tensor& alpha, const torch::Tensor& beta,
                                   const torch::Tensor& levels, const torch::Tensor& thresholds,
                                   double temperature, bool hard, bool need_x,
                                   bool need_thresholds);
#endif  // QNET_WITH_CUDA

// Which vector code the CPU kernel runs. kAuto picks AVX2+FMA when the processor has it, else the
// baseline (SSE2 on x86-64). Tests pin kBaseline to check that both give the same numbers.
enum class CpuVectorIsa { kAuto, kBaseline };
void SetCpuVectorIsa(CpuVectorIsa isa);
// True when the AVX2+FMA kernel would run under the current setting.
bool CpuKernelUsesAvx2();

}  // namespace qnet::engine::internal

#endif  // QNET_WORKERS_ENGINE_QUANTIZATION_QUANTIZER_KERNELS_H_
