// Translation of the engine's results into the API's messages for `qnet-worker serve`: progress
// events and metrics become the Progress / Metrics the worker reports. (The job itself needs no
// translation: the engine runs the API's JobSpec.) The reverse mappings carry a sandboxed job's
// results from its child process back to the engine's types (sandbox.h); what the API messages do
// not hold (ProgressEvent::epoch_end, the input pipeline's train_crop, channel_repeat, holdout) is
// not reported by the worker either. Pure functions, no I/O, so the mapping is unit-tested.
//
//   qnet::v1::Metrics m = qnet::worker::MetricsToProto(result->metrics);
#ifndef QNET_WORKERS_WORKER_WORKER_CONVERT_H_
#define QNET_WORKERS_WORKER_WORKER_CONVERT_H_

#include <string>

#include "qnet/v1/job.pb.h"
#include "workers/engine/job_run.h"

namespace qnet::worker {

// The engine reports accuracy -1 before its first evaluation; the API has 0 for "not yet".
v1::Progress ProgressToProto(const engine::ProgressEvent& event);

v1::Metrics MetricsToProto(const engine::JobMetrics& metrics);

engine::ProgressEvent ProgressFromProto(const v1::Progress& progress);

engine::JobMetrics MetricsFromProto(const v1::Metrics& metrics);

}  // namespace qnet::worker

#endif  // QNET_WORKERS_WORKER_WORKER_CONVERT_H_
