// `qnet-worker run`: one compression job on this machine, no server. Reads a zoo model or a
// TorchScript file and a named dataset (or a dataset directory), runs the engine with a live
// progress bar on stderr, writes the artifacts into --out and prints a summary table on stdout.
//
//   qnet-worker run --model zoo:lenet5 --dataset fashion-mnist --weight-bits 2
//       --activation-bits 2 --pretrain-epochs 1 --epochs 1 --out /tmp/q
//
// Exit status: 0 success; 1 the job failed; 2 bad arguments (one line on stderr); 130 interrupted.
#ifndef QNET_WORKERS_WORKER_RUN_COMMAND_H_
#define QNET_WORKERS_WORKER_RUN_COMMAND_H_

#include <string>

#include <CLI/CLI.hpp>

#include "absl/status/statusor.h"
#include "workers/engine/job_runner.h"

namespace qnet::worker {

// Adds the `run` subcommand; a failing run throws CLI::RuntimeError(exit status) after printing
// its message.
void RegisterRunCommand(CLI::App& app);

struct DatasetChoice {
  std::string dir;     // the folder or file
  std::string format;  // a registered dataset format (datasets/dataset_format.h)
};

// A dataset name ("fashion-mnist", "mnist", "cifar10"), or a folder, archive or .npz file in a
// registered dataset format, detected by content; `format` ("" = detect,
// datasets::DetectDatasetFormat) overrides the detection. InvalidArgument when neither.
absl::StatusOr<DatasetChoice> ResolveDataset(const std::string& dataset, const std::string& format);

// The summary table printed after a successful run.
std::string FormatSummary(const engine::JobRun& run, const engine::JobResult& result);

}  // namespace qnet::worker

#endif  // QNET_WORKERS_WORKER_RUN_COMMAND_H_
