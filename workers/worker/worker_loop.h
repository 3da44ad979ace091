// The body of `qnet-worker serve`: lease a job from qnetd (WorkerService), fetch its blobs into the
// BlobCache, run it through the engine, heartbeat progress and checkpoints while it runs, upload
// the artifacts and complete the lease (or fail it). The engine call is injected (JobRunner), so
// this library does not link LibTorch and tests drive it with a fake runner; the qnet-worker
// binary passes engine::RunJob.
//
//   qnet::worker::ServeOptions options;
//   options.worker_id = "host-1";
//   options.cache_dir = "/var/cache/qnet";
//   qnet::worker::WorkerLoop loop(grpc::CreateChannel(addr, grpc::InsecureChannelCredentials()),
//                                 addr, options, &qnet::engine::RunJob);
//   std::thread stopper([&] { WaitForSigterm(); loop.Stop(); });
//   absl::Status s = loop.Run();  // until Stop()
//
// Per lease: the heartbeat thread reports the newest progress every `heartbeat_interval` (and at
// once after each checkpoint upload); a heartbeat answering cancel_requested makes should_stop()
// true and the lease is failed as cancelled; a heartbeat refused with FAILED_PRECONDITION or
// NOT_FOUND means the lease is gone (expired, given to another worker): the job is stopped and
// dropped without reporting. Deterministic errors (a bad model or dataset: the codes
// engine::IsRetryableFailure names) fail the job for good; transient ones are reported retryable.
#ifndef QNET_WORKERS_WORKER_WORKER_LOOP_H_
#define QNET_WORKERS_WORKER_WORKER_LOOP_H_

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include <grpcpp/grpcpp.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "client/qnet_client.h"
#include "qnet/v1/worker.grpc.pb.h"
#include "workers/engine/job_runner.h"
#include "workers/worker/blob_cache.h"

namespace qnet::worker {

// engine::RunJob's signature.
using JobRunner = std::function<absl::StatusOr<engine::JobResult>(const engine::JobRun&,
                                                                  const engine::JobCallbacks&)>;

// runner(run, callbacks) with what it throws turned into an error: RESOURCE_EXHAUSTED for
// std::bad_alloc, INTERNAL otherwise.
absl::StatusOr<engine::JobResult> RunCatching(const JobRunner& runner, const engine::JobRun& run,
                                              const engine::JobCallbacks& callbacks);

struct ServeOptions {
  std::string worker_id;
  std::string device = "auto";       // handed to the engine: "auto", "cpu", "cuda", "cuda:N"
  std::string device_label = "cpu";  // reported to the server: "cpu", "cuda:0 (NVIDIA H100)"
  std::string cache_dir;             // blobs, datasets and per-job work directories
  std::string token;                 // sent as "authorization: Bearer TOKEN"; "" = none
  std::chrono::milliseconds heartbeat_interval{2000};
  int lease_wait_seconds = 15;  // AcquireLease long-poll
  bool once = false;            // Run() returns after one job
  // Retry pacing when the server is unreachable.
  std::chrono::milliseconds min_backoff{500};
  std::chrono::milliseconds max_backoff{10000};
  // How long a final CompleteLease / FailLease is retried while the server is unreachable.
  std::chrono::milliseconds report_retry_for{60000};
  // After Stop(), how long to wait for the engine to notice should_stop() before giving up on it.
  std::chrono::milliseconds stop_grace{15000};
};

enum class LeaseOutcome {
  kNoJob,      // the long-poll ended without a job
  kCompleted,  // CompleteLease accepted
  kFailed,     // FailLease sent (retryable or not)
  kCancelled,  // stopped on the user's request; FailLease(cancelled) sent
  kLeaseLost,  // the server took the lease back; nothing reported
  kAbandoned,  // Stop() while running; FailLease(retryable) sent when possible
};

const char* LeaseOutcomeName(LeaseOutcome outcome);

class WorkerLoop {
 public:
  WorkerLoop(std::shared_ptr<grpc::Channel> channel, std::string server_address,
             ServeOptions options, JobRunner runner);
  ~WorkerLoop();
  WorkerLoop(const WorkerLoop&) = delete;
  WorkerLoop& operator=(const WorkerLoop&) = delete;

  // Leases and runs jobs until Stop() (or, with `once`, until one job was handled). Never gives
  // up on an unreachable server: it retries with backoff. OK on a clean stop; after Stop() while
  // the engine ignored should_stop() past `stop_grace`, ABORTED (the caller should exit the
  // process: the engine thread still runs).
  absl::Status Run();

  // One AcquireLease and, when it brings a job, that job to its end.
  absl::StatusOr<LeaseOutcome> RunOnce();

  // Thread-safe and quick; callable from a signal-watching thread.
  void Stop();
  bool stopping() const { return stopping_.load(); }

 private:
  // A call's deadline and the worker token.
  void PrepareCall(grpc::ClientContext& context, std::chrono::milliseconds timeout) const;
  struct Lease;

  LeaseOutcome RunLease(const v1::AcquireLeaseResponse& response);
  // Downloads what the job needs and fills the engine config; errors fail the lease.
  absl::StatusOr<engine::JobRun> Prepare(const v1::AcquireLeaseResponse& response,
                                         const std::string& work_dir);
  // Where the engine reads the job's dataset: the lease's path on a shared volume, or a folder
  // of the downloaded dataset files.
  absl::StatusOr<std::string> DatasetPath(const v1::AcquireLeaseResponse& response);
  void HeartbeatLoop(Lease& lease);
  void SendHeartbeat(Lease& lease);
  absl::Status UploadCheckpoint(Lease& lease, const std::string& checkpoint_path);
  absl::StatusOr<LeaseOutcome> Finish(Lease& lease,
                                      const absl::StatusOr<engine::JobResult>& result);
  // CompleteLease / FailLease with retries while the server is unreachable.
  absl::Status Report(Lease& lease, const std::function<grpc::Status(grpc::ClientContext&)>& call,
                      const char* what);
  // Sleeps up to `d`, returning early (false) on Stop().
  bool SleepUnlessStopped(std::chrono::milliseconds d);

  std::string address_;
  ServeOptions options_;
  JobRunner runner_;
  std::unique_ptr<v1::WorkerService::Stub> stub_;
  client::QnetClient blobs_;
  BlobCache cache_;

  std::atomic<bool> stopping_{false};
  std::atomic<bool> engine_stuck_{false};
  std::mutex mutex_;
  std::condition_variable wake_;
  grpc::ClientContext* pending_acquire_ = nullptr;  // guarded by mutex_
};

}  // namespace qnet::worker

#endif  // QNET_WORKERS_WORKER_WORKER_LOOP_H_
