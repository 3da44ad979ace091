#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
__global__ void qnet_probe(float* x) { x[threadIdx.x] *= 2.f; }
void QnetProbe(at::Tensor x) { qnet_probe<<<1, 32, 0, at::cuda::getCurrentCUDAStream()>>>(x.data_ptr<float>()); }
