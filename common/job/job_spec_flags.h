// The job's command-line flags, bound once for every command that builds a JobSpec: `qnet submit`
// and `qnet-worker run` take the same flags with the same meaning. Values stay as given (unset
// means the default of common/job/job_spec.h); ValidateJobSpec judges them, not the parser.
//
//   qnet::job::JobSpecFlags flags;
//   qnet::job::BindJobSpecFlags(*submit, flags, {.model_help = "zoo:NAME or sha256:<hex>"});
//   app.parse(argc, argv);
//   absl::StatusOr<qnet::v1::JobSpec> spec = qnet::job::BuildJobSpec(flags, flags.model);
#ifndef QNET_COMMON_JOB_JOB_SPEC_FLAGS_H_
#define QNET_COMMON_JOB_JOB_SPEC_FLAGS_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "qnet/v1/job.pb.h"

namespace qnet::job {

// Zero / empty / unset means "not given".
struct JobSpecFlags {
  std::string model;  // "zoo:NAME", "sha256:<hex>" or a local model file
  std::string dataset;
  std::optional<int> weight_bits;
  int activation_bits = 0;
  std::string weight_levels;  // "-1,0,1"
  std::optional<int> epochs;  // 0 is a value: no QN epochs
  int pretrain_epochs = 0;
  int batch_size = 0;
  double learning_rate = 0;
  int64_t max_train_samples = 0;
  int64_t max_test_samples = 0;
  std::optional<uint64_t> seed;
  double temperature_slope = 0;
  std::optional<double> distill_weight;  // 0 is a value: labels only
  bool quantize_first_last = false;
  bool learn_thresholds = false;
  // Per channel, comma-separated ("0.5" or "0.49,0.48,0.45"); both empty: the dataset's own.
  std::string input_mean, input_std;
  std::string export_formats;  // "torchscript,onnx"
  std::string input_shape;     // "3x32x32"
  int resize_size = 0;
  std::optional<bool> random_resized_crop;
  double crop_scale_min = 0, crop_scale_max = 0;
  std::optional<bool> horizontal_flip;
  std::optional<double> holdout_fraction;
};

struct BindOptions {
  std::string model_help;    // what --model accepts in this command
  std::string dataset_help;  // what --dataset accepts in this command
};

// Adds the flags to `command`; `flags` must outlive parsing.
void BindJobSpecFlags(CLI::App& command, JobSpecFlags& flags, const BindOptions& options);

// "1,2.5, -3" -> {1, 2.5, -3}; INVALID_ARGUMENT naming the bad item.
absl::StatusOr<std::vector<double>> ParseNumberList(absl::string_view text, absl::string_view flag);
// "a, b,,c" -> {"a", "b", "c"}.
std::vector<std::string> ParseWordList(absl::string_view text);

// The spec the flags describe, with `model_ref` as its model (the digest once a local file is
// uploaded). Only malformed values (a number that is not one) are refused here.
absl::StatusOr<v1::JobSpec> BuildJobSpec(const JobSpecFlags& flags, const std::string& model_ref);

}  // namespace qnet::job

#endif  // QNET_COMMON_JOB_JOB_SPEC_FLAGS_H_
