// The `qnet submit` flags as plain values, and their mapping onto a JobSpec. Kept apart from the
// command so the mapping is testable without a server: the CLI fills SubmitFlags from CLI11, asks
// ClassifyModel whether --model names a local file to upload first, and builds the spec.
//
//   qnet::cli::SubmitFlags flags;
//   flags.model = "zoo:lenet5";
//   flags.dataset = "fashion-mnist";
//   flags.weight_bits = 2;
//   flags.weight_levels = "-1,0,1";
//   absl::StatusOr<qnet::v1::JobSpec> spec = qnet::cli::BuildJobSpec(flags, flags.model);
#ifndef QNET_CLIENT_CLI_JOB_SPEC_FLAGS_H_
#define QNET_CLIENT_CLI_JOB_SPEC_FLAGS_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>
#include "absl/strings/string_view.h"

#include "absl/status/statusor.h"
#include "qnet/v1/job.pb.h"

namespace qnet::cli {

// Zero / empty means "not given": the server and engine apply their defaults.
struct SubmitFlags {
  std::string model;  // "zoo:NAME", "sha256:<hex>" or a local TorchScript file
  std::string dataset;
  int weight_bits = 0;
  int activation_bits = 0;
  std::string weight_levels;  // "-1,0,1"
  int epochs = 0;
  int pretrain_epochs = 0;
  int batch_size = 0;
  double learning_rate = 0;
  int64_t max_train_samples = 0;
  int64_t max_test_samples = 0;
  uint64_t seed = 0;
  double temperature_slope = 0;
  std::optional<double> distill_weight;  // unset: the recipe's; 0 is a value (labels only)
  bool quantize_first_last = false;
  bool learn_thresholds = false;
  // Per channel, comma-separated ("0.5" or "0.49,0.48,0.45"); both empty: the dataset's own.
  std::string input_mean, input_std;
  int priority = 0;
  std::string export_formats;  // "torchscript,onnx"
  std::string request_id;
};

enum class ModelSource { kZoo, kDigest, kLocalFile };

// "zoo:..." and "sha256:..." go to the server as they are; anything else is a local file path.
ModelSource ClassifyModel(absl::string_view model);

// "1,2.5, -3" -> {1, 2.5, -3}; INVALID_ARGUMENT naming the bad item.
absl::StatusOr<std::vector<double>> ParseNumberList(absl::string_view text, absl::string_view flag);
// "a, b,,c" -> {"a", "b", "c"}.
std::vector<std::string> ParseWordList(absl::string_view text);

// The spec to submit; `model_ref` replaces flags.model (the digest once a local file is uploaded).
// Only malformed flag values are refused here; the server judges the rest (bits range, names).
absl::StatusOr<v1::JobSpec> BuildJobSpec(const SubmitFlags& flags, const std::string& model_ref);

}  // namespace qnet::cli

#endif  // QNET_CLIENT_CLI_JOB_SPEC_FLAGS_H_
