// Parity: an artifact's own accuracy, measured on the artifact as a user loads it from its file,
// beside the engine's figure for the same model (Metrics.quantized_top1).
//
//   absl::StatusOr<double> top1 = TorchScriptTop1(out_dir + "/model.pt", data.test, 256, device);
#ifndef QNET_WORKERS_ENGINE_EXPORT_PARITY_H_
#define QNET_WORKERS_ENGINE_EXPORT_PARITY_H_

#include <cstdint>
#include <string>

#include <torch/torch.h>

#include "absl/status/statusor.h"
#include "workers/engine/data/data.h"

namespace qnet::engine {

// Top-1 (a fraction) of the TorchScript file at `path`, loaded with torch::jit::load onto
// `device`, on `test`. INTERNAL naming the file when it does not load or does not run.
absl::StatusOr<double> TorchScriptTop1(const std::string& path, const TensorDataset& test,
                                       int64_t batch_size, const torch::Device& device);

}  // namespace qnet::engine

#endif  // QNET_WORKERS_ENGINE_EXPORT_PARITY_H_
