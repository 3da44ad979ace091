// The QN quantizer (docs/METHOD.md): y = alpha * (sum_i s_i * sigmoid(T*(beta*x - b_i)) +
// q_0) in soft mode, with the unit step H in place of the sigmoid in hard mode.
//
// One fused pass over the data for forward and one for backward, with exact gradients for x,
// alpha, beta and (optionally) the thresholds. A soft CPU forward under autograd with fixed
// thresholds keeps its output and per-element derivative sums, and its backward reads them. CPU tensors run a vectorised multi-threaded loop,
// CUDA tensors a fused kernel (when built with CUDA); other devices use the composite ATen path.
// The argument z_i = T*(beta*x - b_i) is clamped to [-kClampWindow, kClampWindow] before the
// sigmoid, identically in forward and backward: a clamped term contributes sigmoid(+-kClampWindow)
// to y and exactly 0 to every gradient (the derivative of the clamp, as ATen's clamp gives it:
// 0 outside the open window, the edges themselves included).
//
// Hard mode returns exactly alpha * q_j, with j = the number of thresholds b_i <= beta*x (the same
// as the sum of steps when the thresholds are sorted). Its backward is straight-through the soft
// function at the same T: x, beta and the thresholds get the soft gradients, alpha gets q_j (the
// exact derivative of alpha*q_j). NaN inputs give NaN outputs in both modes.
//
// Quantize throws c10::Error on bad arguments, like any ATen op. At a boundary that wants a Status,
// call ValidateQuantizeArgs first. The backward is not itself differentiable (no double backward).
//
//   torch::Tensor levels = torch::tensor({-1.0, 0.0, 1.0});          // sorted q_0..q_n
//   torch::Tensor thresholds = torch::tensor({-0.05, 0.05});          // b_1..b_n
//   torch::Tensor y = qnet::engine::Quantize(x, alpha, beta, levels, thresholds,
//                                            /*temperature=*/20.0, /*hard=*/false);
//   y.sum().backward();  // gradients reach x, alpha, beta (and thresholds if it requires grad)
#ifndef QNET_WORKERS_ENGINE_QUANTIZATION_QUANTIZER_H_
#define QNET_WORKERS_ENGINE_QUANTIZATION_QUANTIZER_H_

#include <torch/torch.h>

#include "absl/status/status.h"

namespace qnet::engine {

inline constexpr double kClampWindow = 10.0;
// Most levels one quantizer may have (8-bit activations: 0..255). The CUDA kernel keeps levels
// and thresholds in fixed shared-memory arrays of this size.
inline constexpr int kMaxLevels = 256;

// OK when Quantize would accept the arguments: x floating; alpha, beta one floating value each;
// levels 1-D with 2..kMaxLevels values; thresholds 1-D with one value fewer; all tensors on x's
// device or the CPU; temperature finite and > 0. InvalidArgument naming the problem otherwise.
absl::Status ValidateQuantizeArgs(const torch::Tensor& x, const torch::Tensor& alpha,
                                  const torch::Tensor& beta, const torch::Tensor& levels,
                                  const torch::Tensor& thresholds, double temperature);

// x: any shape, float or double. alpha, beta: 0-dim tensors (learnable). levels: 1-D, n+1 sorted
// values. thresholds: 1-D, n values. Returns a tensor shaped like x.
torch::Tensor Quantize(const torch::Tensor& x, const torch::Tensor& alpha,
                       const torch::Tensor& beta, const torch::Tensor& levels,
                       const torch::Tensor& thresholds, double temperature, bool hard);

// The same function written as a plain composition of ATen ops (sum of sigmoids); autograd
// differentiates it. The reference in tests and benchmarks, and the fallback for other devices.
torch::Tensor QuantizeComposite(const torch::Tensor& x, const torch::Tensor& alpha,
                                const torch::Tensor& beta, const torch::Tensor& levels,
                                const torch::Tensor& thresholds, double temperature, bool hard);

}  // namespace qnet::engine

#endif  // QNET_WORKERS_ENGINE_QUANTIZATION_QUANTIZER_H_
