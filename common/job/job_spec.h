// One job schema: the proto JobSpec is the job everywhere (qnetd, `qnet submit`, `qnet-worker
// run`, the engine). This header holds what every process must agree on about it: the limits on
// each setting, the defaults an unset setting takes, and the one validator. qnetd validates before
// it queues a job, `qnet-worker run` before it starts, and the engine before it trains, all with
// ValidateJobSpec, so a job one accepts cannot fail on another for a setting out of range.
//
//   qnet::v1::JobSpec spec = ...;
//   if (absl::Status s = qnet::job::ValidateJobSpec(spec, {}); !s.ok()) return s;
//   qnet::v1::JobSpec effective = qnet::job::WithDefaults(spec);  // every default resolved
//   int epochs = effective.training().epochs();
#ifndef QNET_COMMON_JOB_JOB_SPEC_H_
#define QNET_COMMON_JOB_JOB_SPEC_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/job/job_limits.h"
#include "qnet/v1/job.pb.h"

namespace qnet::job {

struct IntLimit {
  int min, max;
};

// Limits on the job's settings (inclusive).
inline constexpr IntLimit kWeightBits{1, 8};
inline constexpr IntLimit kActivationBits{0, 8};  // 0: float activations
inline constexpr IntLimit kEpochs{0, 1000};
inline constexpr IntLimit kPretrainEpochs{0, 1000};
inline constexpr IntLimit kBatchSize{1, 65536};
inline constexpr IntLimit kWeightLevelCount{2, 256};
inline constexpr double kMaxLearningRate = 10;
// Temperature growth per epoch. The schedule's temperature is capped at 2000 anyway
// (docs/METHOD.md, "Temperature schedule"), so a steeper slope would only reach the cap in the
// first epoch.
inline constexpr double kMaxTemperatureSlope = 2000;
inline constexpr size_t kMaxRequestIdBytes = 128;
inline constexpr IntLimit kInputChannels{1, 4};
inline constexpr IntLimit kInputSide{1, 4096};  // height and width of JobSpec.input_shape
inline constexpr IntLimit kResizeSize{0, 8192};
// The serialized spec: every valid spec is a few KiB; this keeps what a job stores bounded.
inline constexpr size_t kMaxJobSpecBytes = 64 << 10;

// Defaults of unset settings. Learning rate, temperature slope and distillation weight stay 0 /
// unset in the effective spec: the engine's recipe (docs/METHOD.md) resolves them per phase.
inline constexpr int kDefaultWeightBits = 2;
inline constexpr int kDefaultEpochs = 3;
inline constexpr int kDefaultBatchSize = 128;
inline constexpr uint64_t kDefaultSeed = 1;
inline constexpr double kDefaultHoldoutFraction = 0.1;
inline constexpr double kMaxHoldoutFraction = 0.9;

// The input a model takes (JobSpec.input_shape).
struct InputShape {
  int channels = 0, height = 0, width = 0;
  bool operator==(const InputShape&) const = default;
};

// "3x32x32" -> {3, 32, 32}; INVALID_ARGUMENT naming the text and the expected form, or a side
// outside kInputChannels / kInputSide.
absl::StatusOr<InputShape> ParseInputShape(absl::string_view text);
// {3, 32, 32} -> "3x32x32".
std::string FormatInputShape(const InputShape& shape);

// The spec with every default resolved: weight bits (when neither bits nor levels are given),
// epochs, batch size, seed, holdout fraction, and the export formats (every one when none is
// listed). What depends on the dataset (input shape, augmentation) the engine resolves.
v1::JobSpec WithDefaults(const v1::JobSpec& spec);

struct ValidateOptions {
  // `qnet-worker run` takes a local model file; qnetd takes only zoo names and blob digests.
  bool allow_model_path = false;
  // What one job may cost (job_limits.h).
  JobLimits limits = kSchemaJobLimits;
};

// INVALID_ARGUMENT naming every problem found (at most 10, then "and N more"): a missing model or
// dataset, an unknown zoo model, a malformed digest, bits, levels, training settings, input
// normalization or export formats out of range or unknown, a priority, epochs, batch size or
// sample count over options.limits, a spec over kMaxJobSpecBytes. What depends on the process's
// environment (is the blob uploaded, is the dataset registered) is for the caller to add.
absl::Status ValidateJobSpec(const v1::JobSpec& spec, const ValidateOptions& options);
// The same checks as a list, for a caller that adds problems of its own before reporting them
// together with ProblemsToStatus.
std::vector<std::string> JobSpecProblems(const v1::JobSpec& spec, const ValidateOptions& options);
// OK for no problems, else the INVALID_ARGUMENT ValidateJobSpec returns.
absl::Status ProblemsToStatus(std::vector<std::string> problems);

// The weight bits the job runs with: its own, else the default (meaningless when it lists
// weight_levels instead).
int EffectiveWeightBits(const v1::JobSpec& spec);

// What a client sent, clipped to 80 printable characters and quoted, for error messages.
std::string QuoteClientText(absl::string_view text);

// Printable ASCII without spaces, at most kMaxRequestIdBytes ("" = no idempotency).
absl::Status ValidateRequestId(absl::string_view request_id);

// True when `model` names a zoo model ("zoo:NAME") or a blob ("sha256:..."), not a file.
bool IsModelReference(absl::string_view model);

// Whether the job asks for `format` (an empty list asks for every format).
bool WantsExport(const v1::JobSpec& spec, absl::string_view format);

}  // namespace qnet::job

#endif  // QNET_COMMON_JOB_JOB_SPEC_H_
