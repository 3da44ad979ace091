// Channels-last training on the CPU: a model whose 4-D parameters are stored NHWC runs its
// convolutions, batch norms and pooling in that layout end to end. PyTorch's CPU convolutions
// (oneDNN) compute in NHWC; handed NCHW tensors, each one reorders its input, output and
// gradients, which on this project's ResNet-20 costs about a sixth of a training step
// (docs/BENCHMARKS.md, "Channels-last steps"). The quantizers work in either layout.
//
// Not every model can: an activation reshaped with `view` (LeNet-style `x.view(-1, 400)`) is
// not contiguous in NHWC and the call throws. So the layout is tried on a copy first. Inputs stay
// NCHW: the first convolution takes them either way.
//
//   const bool nhwc = ChannelsLastTrains(model, BatchIterator(data.train, 2).Next()->images);
//   SetChannelsLast(ModuleParameters(model), nhwc);
//   ... train ...
//   SetChannelsLast(ModuleParameters(model), false);  // artifacts keep PyTorch's default layout
#ifndef QNET_WORKERS_ENGINE_TRAINING_MEMORY_LAYOUT_H_
#define QNET_WORKERS_ENGINE_TRAINING_MEMORY_LAYOUT_H_

#include <torch/script.h>
#include <torch/torch.h>

#include <vector>

#include "workers/engine/transform/transform.h"

namespace qnet::engine {

// Whether a copy of `model` (on the CPU) with channels-last parameters runs a training forward
// and backward on the first two images of `batch` (N x C x H x W, on the CPU). False for any
// error the copy raises and for fewer than two images. `model` itself is untouched.
bool ChannelsLastTrains(const torch::jit::Module& model, const torch::Tensor& batch);

// Every parameter of `model` and its submodules.
std::vector<torch::Tensor> ModuleParameters(const torch::jit::Module& model);
// The QN model's parameters and its quantized layers' latent weights: all of its tensors whose
// layout SetChannelsLast sets.
std::vector<torch::Tensor> ModuleParameters(QuantizedModel& model);

// Stores every 4-D floating-point tensor of `tensors` channels-last, or, with on=false,
// contiguous again. In place: each keeps its identity, so an optimizer or quantizer holding it
// still holds the same tensor.
void SetChannelsLast(const std::vector<torch::Tensor>& tensors, bool on);

}  // namespace qnet::engine

#endif  // QNET_WORKERS_ENGINE_TRAINING_MEMORY_LAYOUT_H_
