// Fused CUDA kernels of the quantizer (see quantizer.h for the function, quantizer_kernels.h for
// these entry points). One grid-stride pass over x for the forward, one over x and grad_y for the
// backward. The small parameters (alpha, beta, levels, thresholds) travel as one device tensor
// that every block copies into shared memory, so nothing is read back to the host and no launch
// waits on the device. Backward sums (alpha, beta, thresholds) are per-thread doubles reduced per
// block, then atomically added into a small double buffer: on the GPU their last bits may vary
// from run to run with the order of the atomics.

#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>

#include <algorithm>

#include "workers/engine/quantization/quantizer.h"
#include "workers/engine/quantization/quantizer_kernels.h"

namespace qnet::engine::internal {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;

// Parameter tensor layout: [alpha, beta, q_0..q_n, b_1..b_n].
template <typename S>
struct SharedParams {
  S alpha, beta;
  S levels[kMaxLevels];
  S steps[kMaxLevels];
  S thresholds[kMaxLevels];
};

template <typename S>
__device__ void LoadParams(const S* __restrict__ params, int n, SharedParams<S>& sp) {
  if (threadIdx.x == 0) {
    sp.alpha = params[0];
    sp.beta = params[1];
  }
  for (int i = threadIdx.x; i <= n; i += blockDim.x) sp.levels[i] = params[2 + i];
  for (int i = threadIdx.x; i < n; i += blockDim.x) {
    sp.steps[i] = params[3 + i] - params[2 + i];
    sp.thresholds[i] = params[3 + n + i];
  }
  __syncthreads();
}

__device__ __forceinline__ float ExpFast(float v) { return __expf(v); }
__device__ __forceinline__ double ExpFast(double v) { return exp(v); }

// Clamp that keeps NaN (fminf/fmaxf would drop it), as the CPU kernel and ATen's clamp do.
template <typename S>
__device__ __forceinline__ S ClampWindow(S z) {
  constexpr S kWin = static_cast<S>(kClampWindow);
  z = z < -kWin ? -kWin : z;
  return z > kWin ? kWin : z;
}

template <typename S, bool kHard>
__global__ void __launch_bounds__(kThreads)
    QuantizeForwardKernel(const S* __restrict__ x, S* __restrict__ y, int64_t count,
                          const S* __restrict__ params, int n, S temperature) {
  __shared__ SharedParams<S> sp;
  LoadParams(params, n, sp);
  const int64_t stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t k = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; k < count;
       k += stride) {
    const S bx = sp.beta * x[k];
    if constexpr (kHard) {
      int j = 0;
      for (int i = 0; i < n; ++i) j += bx >= sp.thresholds[i];
      y[k] = bx == bx ? sp.alpha * sp.levels[j] : bx;
    } else {
      S acc = 0;
      for (int i = 0; i < n; ++i) {
        const S zc = ClampWindow((bx - sp.thresholds[i]) * temperature);
        acc += sp.steps[i] * (S(1) / (S(1) + ExpFast(-zc)));
      }
      y[k] = sp.alpha * (acc + sp.levels[0]);
    }
  }
}

__device__ __forceinline__ double WarpSum(double v) {
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffffu, v, offset);
  return v;
}

// sums: [sum g*bracket, sum g*x*D, sum_i g*s_i*sig_i*(1-sig_i) ...], scaled on the host side.
template <typename S, bool kHard, bool kThresholds>
__global__ void __launch_bounds__(kThreads)
    QuantizeBackwardKernel(const S* __restrict__ x, const S* __restrict__ g, S* __restrict__ gx,
                           int64_t count, const S* __restrict__ params, int n, S temperature,
                           double* __restrict__ sums) {
  __shared__ SharedParams<S> sp;
  __shared__ double block_partial[2][kWarps];
  LoadParams(params, n, sp);
  const int lane = threadIdx.x % 32;
  const int warp = threadIdx.x / 32;
  const S scale_x = sp.alpha * sp.beta * temperature;
  constexpr S kWin = static_cast<S>(kClampWindow);
  double acc_alpha = 0;
  double acc_beta = 0;

  // Per-warp threshold sums live in shared memory; the loop below is uniform across the block
  // (every thread runs the same number of rounds, idle lanes with g = 0) so that full-warp
  // shuffles are legal inside it.
  [[maybe_unused]] double(*warp_thr)[kMaxLevels] = nullptr;
  if constexpr (kThresholds) {
    __shared__ double thr_sums[kWarps][kMaxLevels];
    warp_thr = thr_sums;
    for (int i = threadIdx.x; i < kWarps * kMaxLevels; i += blockDim.x) {
      thr_sums[i / kMaxLevels][i % kMaxLevels] = 0;
    }
    __syncthreads();
  }

  const int64_t stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t base = static_cast<int64_t>(blockIdx.x) * blockDim.x; base < count; base += stride) {
    const int64_t k = base + threadIdx.x;
    const bool valid = k < count;
    const S xv = valid ? x[k] : S(0);
    const S gv = valid ? g[k] : S(0);
    const S bx = sp.beta * xv;
    S dsum = 0;
    S soft = 0;
    int j = 0;
    for (int i = 0; i < n; ++i) {
      const S z = (bx - sp.thresholds[i]) * temperature;
      const S sig = S(1) / (S(1) + ExpFast(-ClampWindow(z)));
      const S d = (z > -kWin && z < kWin) ? sig * (S(1) - sig) : S(0);
      const S sd = sp.steps[i] * d;
      dsum += sd;
      if constexpr (kHard) {
        j += bx >= sp.thresholds[i];
      } else {
        soft += sp.steps[i] * sig;
      }
      if constexpr (kThresholds) {
        const double w = WarpSum(static_cast<double>(gv * sd));
        if (lane == 0) warp_thr[warp][i] += w;
      }
    }
    const S bracket = kHard ? sp.levels[j] : soft + sp.levels[0];
    if (valid) {
      if (gx != nullptr) gx[k] = gv * dsum * scale_x;
      acc_alpha += static_cast<double>(gv * bracket);
      acc_beta += static_cast<double>(gv * xv * dsum);
    }
  }

  acc_alpha = WarpSum(acc_alpha);
  acc_beta = WarpSum(acc_beta);
  if (lane == 0) {
    block_partial[0][warp] = acc_alpha;
    block_partial[1][warp] = acc_beta;
  }
  __syncthreads();
  if (threadIdx.x < 2) {
    double total = 0;
    for (int w = 0; w < kWarps; ++w) total += block_partial[threadIdx.x][w];
    atomicAdd(&sums[threadIdx.x], total);
  }
  if constexpr (kThresholds) {
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
      double total = 0;
      for (int w = 0; w < kWarps; ++w) total += warp_thr[w][i];
      atomicAdd(&sums[2 + i], total);
    }
  }
}

int Blocks(int64_t count) {
  const int64_t wanted = (count + kThreads - 1) / kThreads;
  const int64_t cap =
      static_cast<int64_t>(at::cuda::getCurrentDeviceProperties()->multiProcessorCount) * 8;
  return static_cast<int>(std::max<int64_t>(1, std::min(wanted, cap)));
}

torch::Tensor PackParams(const torch::Tensor& x, const torch::Tensor& alpha,
                         const torch::Tensor& beta, const torch::Tensor& levels,
                         const torch::Tensor& thresholds) {
  const auto opts = x.options();
  return torch::cat({alpha.detach().reshape({1}).to(opts), beta.detach().reshape({1}).to(opts),
                     levels.detach().reshape({-1}).to(opts),
                     thresholds.detach().reshape({-1}).to(opts)})
      .contiguous();
}

template <typename S>
void LaunchForward(const torch::Tensor& x, torch::Tensor& y, const torch::Tensor& params, int n,
                   double temperature, bool hard) {
  const int64_t count = x.numel();
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  const auto launch = [&](auto kernel) {
    kernel<<<Blocks(count), kThreads, 0, stream>>>(x.data_ptr<S>(), y.data_ptr<S>(), count,
                                                   params.data_ptr<S>(), n,
                                                   static_cast<S>(temperature));
  };
  if (hard) {
    launch(QuantizeForwardKernel<S, true>);
  } else {
    launch(QuantizeForwardKernel<S, false>);
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template <typename S>
void LaunchBackward(const torch::Tensor& g, const torch::Tensor& x, torch::Tensor& gx,
                    const torch::Tensor& params, int n, double temperature, bool hard,
                    bool thresholds, torch::Tensor& sums) {
  const int64_t count = x.numel();
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  S* gx_ptr = gx.defined() ? gx.data_ptr<S>() : nullptr;
  const auto launch = [&](auto kernel) {
    kernel<<<Blocks(count), kThreads, 0, stream>>>(
        x.data_ptr<S>(), g.data_ptr<S>(), gx_ptr, count, params.data_ptr<S>(), n,
        static_cast<S>(temperature), sums.data_ptr<double>());
  };
  if (hard) {
    thresholds ? launch(QuantizeBackwardKernel<S, true, true>)
               : launch(QuantizeBackwardKernel<S, true, false>);
  } else {
    thresholds ? launch(QuantizeBackwardKernel<S, false, true>)
               : launch(QuantizeBackwardKernel<S, false, false>);
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

}  // namespace

torch::Tensor QuantizeForwardCuda(const torch::Tensor& x, const torch::Tensor& alpha,
                                  const torch::Tensor& beta, const torch::Tensor& levels,
                                  const torch::Tensor& thresholds, double temperature, bool hard) {
  const c10::cuda::CUDAGuard guard(x.device());
  const torch::Tensor params = PackParams(x, alpha, beta, levels, thresholds);
  const int n = static_cast<int>(thresholds.numel());
  torch::Tensor y = torch::empty_like(x, torch::MemoryFormat::Contiguous);
  if (x.numel() == 0) return y;
  if (x.scalar_type() == torch::kDouble) {
    LaunchForward<double>(x, y, params, n, temperature, hard);
  } else {
    LaunchForward<float>(x, y, params, n, temperature, hard);
  }
  return y;
}

QuantizeGrads QuantizeBackwardCuda(const torch::Tensor& grad_y, const torch::Tensor& x,
                                   const torch::Tensor& alpha, const torch::Tensor& beta,
                                   const torch::Tensor& levels, const torch::Tensor& thresholds,
                                   double temperature, bool hard, bool need_x,
                                   bool need_thresholds) {
  const c10::cuda::CUDAGuard guard(x.device());
  const torch::Tensor params = PackParams(x, alpha, beta, levels, thresholds);
  const int n = static_cast<int>(thresholds.numel());
  torch::Tensor sums =
      torch::zeros({2 + (need_thresholds ? n : 0)}, x.options().dtype(torch::kDouble));
  torch::Tensor gx;
  if (need_x) gx = torch::empty_like(x, torch::MemoryFormat::Contiguous);
  if (x.numel() > 0) {
    if (x.scalar_type() == torch::kDouble) {
      LaunchBackward<double>(grad_y, x, gx, params, n, temperature, hard, need_thresholds, sums);
    } else {
      LaunchBackward<float>(grad_y, x, gx, params, n, temperature, hard, need_thresholds, sums);
    }
  }
  // The factors shared by all elements, applied once on the device (no host round trip).
  const torch::Tensor at = alpha.detach().reshape({}).to(sums.options()) * temperature;
  QuantizeGrads grads;
  grads.x = gx;
  grads.alpha = sums[0].to(alpha.options()).reshape(alpha.sizes());
  grads.beta = (sums[1] * at).to(beta.options()).reshape(beta.sizes());
  if (need_thresholds) {
    grads.thresholds =
        (sums.slice(0, 2) * -at).to(thresholds.options()).reshape(thresholds.sizes());
  }
  return grads;
}

}  // namespace qnet::engine::internal
