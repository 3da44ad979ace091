#include "workers/engine/training/memory_layout.h"

#include <exception>

namespace qnet::engine {
namespace {

torch::MemoryFormat Layout(bool channels_last) {
  return channels_last ? torch::MemoryFormat::ChannelsLast : torch::MemoryFormat::Contiguous;
}

}  // namespace

bool ChannelsLastTrains(const torch::jit::Module& model, const torch::Tensor& batch) {
  if (!batch.defined() || batch.dim() != 4 || batch.size(0) < 2 || !batch.is_cpu()) return false;
  try {
    // Cloned without autograd history, or the copy's gradients would flow into `model`.
    torch::jit::Module copy = [&] {
      torch::NoGradGuard no_grad;
      return model.clone();
    }();
    for (const torch::Tensor& p : ModuleParameters(copy)) {
      if (p.is_floating_point()) p.requires_grad_(true);
    }
    SetChannelsLast(ModuleParameters(copy), true);
    copy.train(true);
    torch::AutoGradMode grad(true);
    const torch::Tensor out = copy.forward({batch.slice(0, 0, 2)}).toTensor();
    out.sum().backward();
    return true;
  } catch (const std::exception&) {
    return false;  // the model as written needs contiguous activations
  }
}

std::vector<torch::Tensor> ModuleParameters(const torch::jit::Module& model) {
  std::vector<torch::Tensor> out;
  for (const torch::Tensor& p : model.parameters(/*recurse=*/true)) out.push_back(p);
  return out;
}

std::vector<torch::Tensor> ModuleParameters(QuantizedModel& model) {
  std::vector<torch::Tensor> out = ModuleParameters(model.module());
  for (const torch::Tensor& latent : model.LatentWeights()) out.push_back(latent);
  return out;
}

void SetChannelsLast(const std::vector<torch::Tensor>& tensors, bool on) {
  torch::NoGradGuard no_grad;
  for (const torch::Tensor& t : tensors) {
    if (!t.defined() || t.dim() != 4 || !t.is_floating_point()) continue;
    torch::Tensor target = t;  // shares t's TensorImpl
    target.set_data(t.contiguous(Layout(on)));
  }
}

}  // namespace qnet::engine
