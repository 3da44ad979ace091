#include "workers/engine/export/parity.h"

#include <exception>

#include <torch/script.h>

#include "absl/strings/str_cat.h"
#include "workers/engine/torch_error.h"
#include "workers/engine/training/evaluation.h"

namespace qnet::engine {

absl::StatusOr<double> TorchScriptTop1(const std::string& path, const TensorDataset& test,
                                       int64_t batch_size, const torch::Device& device) {
  try {
    torch::jit::Module artifact = torch::jit::load(path, device);
    artifact.eval();
    const ForwardFn forward = [&](const torch::Tensor& x) {
      return artifact.forward({x}).toTensor();
    };
    return Evaluate(forward, test, batch_size, device).top1;
  } catch (const std::exception& e) {
    return absl::InternalError(
        absl::StrCat("evaluating the TorchScript artifact ", path, ": ", TorchErrorText(e)));
  }
}

}  // namespace qnet::engine
