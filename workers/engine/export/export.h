// The artifacts of a finished job (docs/METHOD.md "Artifacts"), written from a trained
// QuantizedModel:
//  - TorchScript (model.pt): a clone of the float model with every quantized Conv2d/Linear weight
//    set to its hard values alpha*q_j (exactly), attributes qnet_alpha (float) and qnet_levels
//    (1-D) on those layers, and a QnetActivationQuantizer submodule (plain ATen, hard mode,
//    attributes alpha, beta, thresholds, levels, temperature, hard) called in front of each
//    quantized layer whose input is quantized. Eval mode; loads in stock PyTorch. RunJob adds
//    the input normalisation (RecordInputNormalization).
//  - Packed (model.qnet): per quantized layer the codes j bit-packed at ceil(log2(n+1)) bits per
//    weight plus alpha and levels; every other parameter and buffer raw. Layout: "QNETPK02",
//    uint64 little-endian lengths of the compressed and of the plain header, the JSON header
//    (the entries below, without their digests) compressed with zlib, then the payload.
//  - Manifest (manifest.json): the entries (name, shape, bits, levels, alpha, offset, bytes,
//    sha256), total sizes and file digests.
//
//   absl::StatusOr<torch::jit::Module> hard = BuildHardModule(float_model, quantized);
//   absl::StatusOr<PackedModel> packed = WritePackedModel(*hard, quantized, dir + "/model.qnet");
//   absl::StatusOr<std::map<std::string, torch::Tensor>> w = DecodePackedModel(dir +
//   "/model.qnet");
//   // (*w)["conv2.weight"] equals hard->attr("conv2")...attr("weight") exactly
#ifndef QNET_WORKERS_ENGINE_EXPORT_EXPORT_H_
#define QNET_WORKERS_ENGINE_EXPORT_EXPORT_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <torch/script.h>
#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "workers/engine/transform/transform.h"

namespace qnet::engine {

// The hard inference module (see above); `float_model` is the untransformed model whose structure
// the artifact keeps; trained values come from `quantized`.
absl::StatusOr<torch::jit::Module> BuildHardModule(const torch::jit::Module& float_model,
                                                   QuantizedModel& quantized);

// The attributes (List[float], one value per channel) that tell a user of the TorchScript artifact
// how to feed it: x' = (pixel / 255 - qnet_input_mean[c]) / qnet_input_std[c]. The ONNX artifact
// carries the same values as metadata properties of these names (JSON arrays).
inline constexpr char kInputMeanAttr[] = "qnet_input_mean";
inline constexpr char kInputStdAttr[] = "qnet_input_std";
absl::Status RecordInputNormalization(torch::jit::Module& module, const std::vector<double>& mean,
                                      const std::vector<double>& std);
struct InputNormalization {
  std::vector<double> mean, std;
};
// What `module` records, if anything. INVALID_ARGUMENT when the attributes are there but are not
// two float lists that pass CheckInputNormalization.
absl::StatusOr<std::optional<InputNormalization>> RecordedInputNormalization(
    const torch::jit::Module& module);

// The full-precision model as a reusable TorchScript file: a CPU copy of `model` that records
// the input normalisation it was trained with (RecordInputNormalization), saved atomically.
absl::Status SaveFloatModel(const torch::jit::Module& model, const std::vector<double>& mean,
                            const std::vector<double>& std, const std::string& path);

// Saves a module atomically (common/atomic_file.h: parent directories created, no torn file).
absl::Status SaveModule(const torch::jit::Module& module, const std::string& path);

// Bits per code for n+1 levels: ceil(log2(n+1)), at least 1.
int CodeBits(int64_t num_levels);
// Codes (integers in [0, 2^bits)) packed LSB-first into bytes.
std::string PackCodes(const torch::Tensor& codes, int bits);
// The inverse: `count` codes as an int64 tensor. InvalidArgument when bytes are too few.
absl::StatusOr<torch::Tensor> UnpackCodes(std::string_view bytes, int64_t count, int bits);

struct PackedEntry {
  std::string name;
  std::vector<int64_t> shape;
  bool quantized = false;
  int bits = 0;                // quantized: code width
  std::vector<double> levels;  // quantized
  double alpha = 0;            // quantized
  std::string dtype;           // raw: "float32", "float64", "int64", ...
  int64_t offset = 0;          // in the payload
  int64_t bytes = 0;
  std::string sha256;  // of the entry's bytes
};

struct PackedModel {
  std::vector<PackedEntry> entries;
  int64_t file_bytes = 0;
  std::string file_sha256;
};

// Writes model.qnet from the hard module's parameters and buffers; quantized layers' weights are
// coded with the quantizer's hard codes.
absl::StatusOr<PackedModel> WritePackedModel(const torch::jit::Module& hard_module,
                                             QuantizedModel& quantized, const std::string& path);

// Reads model.qnet back: name -> tensor (quantized weights as alpha * levels[code], float32).
// InvalidArgument naming the file for anything malformed. Never throws.
absl::StatusOr<std::map<std::string, torch::Tensor>> DecodePackedModel(const std::string& path);

nlohmann::json ManifestJson(const PackedModel& packed,
                            const std::map<std::string, std::string>& file_digests,
                            int64_t float_size_bytes);

}  // namespace qnet::engine

#endif  // QNET_WORKERS_ENGINE_EXPORT_EXPORT_H_
