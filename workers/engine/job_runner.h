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

#include "absl/status/statusor.h"
#include "workers/engine/job_run.h"

namespace qnet::engine {

// Runs the job. Errors are values: INVALID_ARGUMENT for a bad model, dataset or settings (the
// message names the file and the problem; settings are judged by job::ValidateJobSpec, as qnetd
// judges them), CANCELLED when should_stop said so, INTERNAL otherwise. Never throws.
absl::StatusOr<JobResult> RunJob(const JobRun& run, const JobCallbacks& callbacks);

}  // namespace qnet::engine

#endif  // QNET_WORKERS_ENGINE_JOB_RUNNER_H_
