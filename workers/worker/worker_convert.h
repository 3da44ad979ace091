// Translation between the API's messages and the engine's plain structs for `qnet-worker serve`:
// a leased JobSpec becomes an engine JobConfig, the engine's progress events and metrics become the
// Progress / Metrics the worker reports. Pure functions, no I/O, so the mapping is unit-tested.
//
//   qnet::engine::JobConfig config = qnet::worker::JobConfigFromSpec(job.spec(), "cpu");
//   config.model = cached_model_path;  // when spec.model is a blob digest
//   qnet::v1::Metrics m = qnet::worker::MetricsToProto(result->metrics);
#ifndef QNET_WORKERS_WORKER_WORKER_CONVERT_H_
#define QNET_WORKERS_WORKER_WORKER_CONVERT_H_

#include <string>

#include "qnet/v1/job.pb.h"
#include "workers/engine/job_runner.h"

namespace qnet::worker {

// Every spec field; zero in the spec keeps the engine's default. Paths (model file, dataset and
// output directories) are the caller's to fill in.
engine::JobConfig JobConfigFromSpec(const v1::JobSpec& spec, const std::string& device);

// The engine reports accuracy -1 before its first evaluation; the API has 0 for "not yet".
v1::Progress ProgressToProto(const engine::ProgressEvent& event);

v1::Metrics MetricsToProto(const engine::JobMetrics& metrics);

}  // namespace qnet::worker

#endif  // QNET_WORKERS_WORKER_WORKER_CONVERT_H_
