// The engine's single entry point for running one compression job end to end.
//
// RunJob loads the model (zoo name or TorchScript file), the dataset, pre-trains in full precision
// when asked, fine-tunes with the QN recipe (docs/METHOD.md), evaluates, and writes the artifacts
// into the context's out_dir. Both `qnet-worker run` (local) and `qnet-worker serve` (leased jobs)
// call it; the caller owns the out and checkpoint directories, the engine owns everything written
// inside them.
//
//   qnet::engine::JobRun run;
//   run.spec.set_model("zoo:lenet5");
//   run.spec.set_dataset("fashion-mnist");
//   run.spec.set_weight_bits(2);
//   run.context.dataset_dir = "/usr/share/datasets/fashion-mnist";
//   run.context.dataset_format = "idx";
//   run.context.out_dir = "/tmp/out";
//   qnet::engine::JobCallbacks callbacks;
//   callbacks.on_progress = [](const qnet::engine::ProgressEvent& p) { ... };
//   absl::StatusOr<qnet::engine::JobResult> result = qnet::engine::RunJob(run, callbacks);
#ifndef QNET_WORKERS_ENGINE_JOB_RUNNER_H_
#define QNET_WORKERS_ENGINE_JOB_RUNNER_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "workers/engine/job_run.h"

namespace qnet::engine {

// Runs the job. Before any training, a dry run forwards a batch of the job's images through the
// model, in eval and in train mode, so that a model that cannot work fails within seconds.
// Errors are values, their codes classified by IsRetryableFailure: INVALID_ARGUMENT for a bad
// model, dataset or settings (the message names the file or layer and the problem: not a
// TorchScript archive, nothing to quantize, an input shape or class count that does not match the
// dataset, an output that is not one logits tensor; settings are judged by job::ValidateJobSpec,
// as qnetd judges them), FAILED_PRECONDITION for a Torch error during training (it would recur),
// RESOURCE_EXHAUSTED when memory runs out, CANCELLED when should_stop said so, INTERNAL for the
// unexpected. Never throws.
absl::StatusOr<JobResult> RunJob(const JobRun& run, const JobCallbacks& callbacks);

// Whether a job that failed with `failure` may succeed on another attempt: the one rule by which
// `qnet-worker serve` reports a failure retryable (FailLease) or fails the job at once
// (docs/ARCHITECTURE.md, "Failures"). Deterministic, not retried: the job's own model, data or
// settings, which every attempt meets again: INVALID_ARGUMENT, FAILED_PRECONDITION (also: the
// lease lacks what the job needs), UNIMPLEMENTED, OUT_OF_RANGE, NOT_FOUND (a blob the job names is
// not on the server), ALREADY_EXISTS. Transient, retried: everything else, which is about this
// worker or this moment: UNAVAILABLE and DEADLINE_EXCEEDED (qnetd unreachable), ABORTED,
// RESOURCE_EXHAUSTED (out of memory or disk), DATA_LOSS (a download that arrived corrupt),
// PERMISSION_DENIED (this worker's cache folder), INTERNAL, UNKNOWN, CANCELLED. Header-only:
// the lease loop links no LibTorch.
inline bool IsRetryableFailure(const absl::Status& failure) {
  switch (failure.code()) {
    case absl::StatusCode::kOk:
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kUnimplemented:
    case absl::StatusCode::kOutOfRange:
    case absl::StatusCode::kNotFound:
    case absl::StatusCode::kAlreadyExists:
      return false;
    default:
      return true;
  }
}

}  // namespace qnet::engine

#endif  // QNET_WORKERS_ENGINE_JOB_RUNNER_H_
