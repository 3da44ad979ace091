#include "workers/worker/worker_loop.h"

#include <exception>
#include <filesystem>
#include <new>
#include <optional>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "client/grpc_status.h"
#include "common/digest.h"
#include "spdlog/spdlog.h"
#include "workers/worker/worker_checkpoint.h"
#include "workers/worker/worker_convert.h"

namespace qnet::worker {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr std::chrono::seconds kHeartbeatTimeout{10};
constexpr std::chrono::seconds kReportCallTimeout{15};
// Once stopping, the final report gets this long: a SIGTERM'd pod has ~30 s in all.
constexpr std::chrono::seconds kReportRetryWhileStopping{5};

bool TransientRpc(grpc::StatusCode code) {
  return code == grpc::StatusCode::UNAVAILABLE || code == grpc::StatusCode::DEADLINE_EXCEEDED ||
         code == grpc::StatusCode::UNKNOWN || code == grpc::StatusCode::INTERNAL;
}

// The server no longer holds this lease for us.
bool LeaseGone(grpc::StatusCode code) {
  return code == grpc::StatusCode::FAILED_PRECONDITION || code == grpc::StatusCode::NOT_FOUND;
}

}  // namespace

absl::StatusOr<engine::JobResult> RunCatching(const JobRunner& runner, const engine::JobRun& run,
                                              const engine::JobCallbacks& callbacks) {
  try {
    return runner(run, callbacks);
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError("the engine ran out of memory");
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("the engine threw: ", e.what()));
  } catch (...) {
    return absl::InternalError("the engine threw an unknown exception");
  }
}

void WorkerLoop::PrepareCall(grpc::ClientContext& context,
                             std::chrono::milliseconds timeout) const {
  context.set_deadline(std::chrono::system_clock::now() + timeout);
  if (!options_.token.empty()) context.AddMetadata("authorization", "Bearer " + options_.token);
}

const char* LeaseOutcomeName(LeaseOutcome outcome) {
  switch (outcome) {
    case LeaseOutcome::kNoJob:
      return "no job";
    case LeaseOutcome::kCompleted:
      return "completed";
    case LeaseOutcome::kFailed:
      return "failed";
    case LeaseOutcome::kCancelled:
      return "cancelled";
    case LeaseOutcome::kLeaseLost:
      return "lease lost";
    case LeaseOutcome::kAbandoned:
      return "abandoned";
  }
  return "unknown";
}

// One leased job. Shared with the engine thread's callbacks, which may outlive RunLease when the
// engine ignores should_stop() after Stop().
struct WorkerLoop::Lease {
  std::string job_id;
  std::string token;
  std::string work_dir;

  std::mutex mutex;  // guards progress and checkpoint_digest
  v1::Progress progress;
  std::string checkpoint_digest;

  std::atomic<bool> cancel_requested{false};
  std::atomic<bool> lost{false};

  std::mutex heartbeat_mutex;  // one Heartbeat RPC at a time

  std::mutex wake_mutex;  // guards done
  std::condition_variable wake;
  bool done = false;
};

WorkerLoop::WorkerLoop(std::shared_ptr<grpc::Channel> channel, std::string server_address,
                       ServeOptions options, JobRunner runner)
    : address_(std::move(server_address)),
      options_(std::move(options)),
      runner_(std::move(runner)),
      stub_(v1::WorkerService::NewStub(channel)),
      blobs_(channel, address_),
      cache_(options_.cache_dir, [this](const std::string& digest, const std::string& path) {
        return blobs_.DownloadBlob(digest, path).status();
      }) {}

WorkerLoop::~WorkerLoop() = default;

void WorkerLoop::Stop() {
  stopping_ = true;
  std::lock_guard<std::mutex> lock(mutex_);
  if (pending_acquire_ != nullptr) pending_acquire_->TryCancel();
  wake_.notify_all();
}

bool WorkerLoop::SleepUnlessStopped(std::chrono::milliseconds d) {
  std::unique_lock<std::mutex> lock(mutex_);
  wake_.wait_for(lock, d, [this] { return stopping_.load(); });
  return !stopping_;
}

absl::Status WorkerLoop::Run() {
  std::chrono::milliseconds backoff = options_.min_backoff;
  std::string last_error;
  while (!stopping_) {
    absl::StatusOr<LeaseOutcome> outcome = RunOnce();
    if (!outcome.ok()) {
      if (stopping_) break;
      // A missing or wrong worker token stays wrong: say so and stop instead of retrying.
      if (absl::IsUnauthenticated(outcome.status()) || absl::IsPermissionDenied(outcome.status())) {
        return outcome.status();
      }
      // Log each new kind of trouble once, not every retry.
      const std::string error(outcome.status().message());
      if (error != last_error) {
        spdlog::warn("{}; retrying every {} ms at most", error, options_.max_backoff.count());
        last_error = error;
      }
      SleepUnlessStopped(backoff);
      backoff = std::min(backoff * 2, options_.max_backoff);
      continue;
    }
    if (!last_error.empty()) spdlog::info("qnetd at {} answers again", address_);
    last_error.clear();
    backoff = options_.min_backoff;
    if (engine_stuck_) {
      return absl::AbortedError("the engine did not stop in time; exit the process");
    }
    if (options_.once && *outcome != LeaseOutcome::kNoJob) break;
  }
  return absl::OkStatus();
}

absl::StatusOr<LeaseOutcome> WorkerLoop::RunOnce() {
  v1::AcquireLeaseRequest request;
  request.set_worker_id(options_.worker_id);
  request.set_device(options_.device_label);
  request.set_wait_seconds(options_.lease_wait_seconds);
  grpc::ClientContext context;
  PrepareCall(context, std::chrono::seconds(options_.lease_wait_seconds + 10));
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (stopping_) return LeaseOutcome::kNoJob;
    pending_acquire_ = &context;
  }
  v1::AcquireLeaseResponse response;
  grpc::Status status = stub_->AcquireLease(&context, request, &response);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    pending_acquire_ = nullptr;
  }
  if (stopping_) {
    // Leased just as we were told to stop: hand it back at once rather than sit on it.
    if (status.ok() && response.has_job() && !response.job().id().empty()) {
      return RunLease(response);
    }
    return LeaseOutcome::kNoJob;
  }
  if (!status.ok()) return client::FromGrpc(status, "AcquireLease", address_);
  if (!response.has_job() || response.job().id().empty()) return LeaseOutcome::kNoJob;
  return RunLease(response);
}

absl::StatusOr<std::string> WorkerLoop::DatasetPath(const v1::AcquireLeaseResponse& response) {
  const std::string& name = response.job().spec().dataset();
  if (!response.dataset_path().empty()) {
    // Read in place from the operator's volume. Another attempt on this worker would not see it
    // either, so the job fails for good (INVALID_ARGUMENT) with the path in the message.
    std::error_code ec;
    if (!fs::exists(response.dataset_path(), ec)) {
      return absl::InvalidArgumentError(
          absl::StrCat("dataset '", name, "': ", response.dataset_path(),
                       " is not visible on worker ", options_.worker_id,
                       "; mount the volume of qnetd's --dataset at that path on every worker"));
    }
    return response.dataset_path();
  }
  if (response.dataset_files().empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("the server sent no files for dataset '", name, "'"));
  }
  return cache_.Dataset(name, response.dataset_files());
}

absl::StatusOr<engine::JobRun> WorkerLoop::Prepare(const v1::AcquireLeaseResponse& response,
                                                   const std::string& work_dir) {
  const v1::Job& job = response.job();
  engine::JobRun run;
  run.spec = job.spec();
  engine::RunContext& ctx = run.context;
  if (!options_.device.empty()) ctx.device = options_.device;
  const std::string& model = job.spec().model();
  if (absl::StartsWith(model, "sha256:")) {
    absl::StatusOr<std::string> path = cache_.Blob(model);
    if (!path.ok()) {
      return absl::Status(path.status().code(),
                          absl::StrCat("fetching model ", model, ": ", path.status().message()));
    }
    ctx.model_path = *path;
  } else if (!absl::StartsWith(model, "zoo:")) {
    return absl::InvalidArgumentError(
        absl::StrCat("model '", model, "' is neither zoo:NAME nor a sha256: blob digest"));
  }

  absl::StatusOr<std::string> dataset = DatasetPath(response);
  if (!dataset.ok()) return dataset.status();
  ctx.dataset_dir = *dataset;
  if (response.dataset_format().empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("the server sent no format for dataset '", job.spec().dataset(), "'"));
  }
  ctx.dataset_format = response.dataset_format();

  ctx.out_dir = (fs::path(work_dir) / "out").string();
  ctx.checkpoint_dir = (fs::path(work_dir) / "checkpoints").string();
  std::error_code ec;
  fs::create_directories(ctx.out_dir, ec);
  fs::create_directories(ctx.checkpoint_dir, ec);
  if (ec) {
    return absl::PermissionDeniedError(
        absl::StrCat("cannot create work directories under ", work_dir, ": ", ec.message()));
  }

  // Resume from the last attempt's checkpoint. A checkpoint that cannot be had only costs time:
  // the job starts over rather than failing.
  if (!job.checkpoint_digest().empty()) {
    const std::string envelope = (fs::path(work_dir) / "resume.checkpoint").string();
    absl::StatusOr<int64_t> got = blobs_.DownloadBlob(job.checkpoint_digest(), envelope);
    absl::StatusOr<std::string> unpacked =
        got.ok() ? UnpackCheckpoint(envelope, ctx.checkpoint_dir) : got.status();
    if (unpacked.ok()) {
      spdlog::info("job {}: resuming from {} ({})", job.id(),
                   fs::path(*unpacked).filename().string(), job.checkpoint_digest());
    } else {
      spdlog::warn("job {}: cannot use checkpoint {} ({}); starting from scratch", job.id(),
                   job.checkpoint_digest(), std::string(unpacked.status().message()));
    }
    fs::remove(envelope, ec);
  }
  return run;
}

void WorkerLoop::HeartbeatLoop(Lease& lease) {
  std::unique_lock<std::mutex> lock(lease.wake_mutex);
  while (!lease.done) {
    lease.wake.wait_for(lock, options_.heartbeat_interval, [&] { return lease.done; });
    if (lease.done) break;
    lock.unlock();
    SendHeartbeat(lease);
    lock.lock();
  }
}

void WorkerLoop::SendHeartbeat(Lease& lease) {
  std::lock_guard<std::mutex> serial(lease.heartbeat_mutex);
  if (lease.lost) return;
  v1::HeartbeatRequest request;
  request.set_job_id(lease.job_id);
  request.set_lease_token(lease.token);
  {
    std::lock_guard<std::mutex> lock(lease.mutex);
    *request.mutable_progress() = lease.progress;
    request.set_checkpoint_digest(lease.checkpoint_digest);
  }
  grpc::ClientContext context;
  PrepareCall(context, kHeartbeatTimeout);
  v1::HeartbeatResponse response;
  grpc::Status status = stub_->Heartbeat(&context, request, &response);
  if (status.ok()) {
    if (response.cancel_requested() && !lease.cancel_requested.exchange(true)) {
      spdlog::info("job {}: cancel requested; stopping", lease.job_id);
    }
    return;
  }
  if (LeaseGone(status.error_code())) {
    if (!lease.lost.exchange(true)) {
      spdlog::warn("job {}: lease lost ({}); dropping the job", lease.job_id,
                   status.error_message());
    }
    return;
  }
  // Transient: the next beat may get through before the lease expires.
  spdlog::warn("job {}: heartbeat failed: {}", lease.job_id,
               std::string(client::FromGrpc(status, "Heartbeat", address_).message()));
}

absl::Status WorkerLoop::UploadCheckpoint(Lease& lease, const std::string& checkpoint_path) {
  const std::string envelope =
      (fs::path(lease.work_dir) / (fs::path(checkpoint_path).filename().string() + ".upload"))
          .string();
  absl::Status packed = PackCheckpoint(checkpoint_path, envelope);
  if (!packed.ok()) return packed;
  absl::StatusOr<client::UploadResult> uploaded = blobs_.UploadFile(envelope, "checkpoint");
  std::error_code ec;
  fs::remove(envelope, ec);
  if (!uploaded.ok()) return uploaded.status();
  {
    std::lock_guard<std::mutex> lock(lease.mutex);
    lease.checkpoint_digest = uploaded->digest;
  }
  spdlog::info("job {}: checkpoint {} uploaded as {}", lease.job_id,
               fs::path(checkpoint_path).filename().string(), uploaded->digest);
  // Report it now: a worker killed before the next regular beat must not lose this epoch.
  SendHeartbeat(lease);
  return absl::OkStatus();
}

absl::Status WorkerLoop::Report(Lease& lease,
                                const std::function<grpc::Status(grpc::ClientContext&)>& call,
                                const char* what) {
  const auto give_up =
      Clock::now() + (stopping_ ? std::chrono::milliseconds(kReportRetryWhileStopping)
                                : options_.report_retry_for);
  std::chrono::milliseconds backoff = options_.min_backoff;
  while (true) {
    grpc::ClientContext context;
    PrepareCall(context, kReportCallTimeout);
    grpc::Status status = call(context);
    if (status.ok()) return absl::OkStatus();
    if (LeaseGone(status.error_code())) lease.lost = true;
    if (!TransientRpc(status.error_code()) || Clock::now() + backoff > give_up) {
      return client::FromGrpc(status, what, address_);
    }
    std::this_thread::sleep_for(backoff);
    backoff = std::min(backoff * 2, options_.max_backoff);
  }
}

absl::StatusOr<LeaseOutcome> WorkerLoop::Finish(Lease& lease,
                                                const absl::StatusOr<engine::JobResult>& result) {
  if (lease.lost) return LeaseOutcome::kLeaseLost;
  if (result.ok()) {
    v1::CompleteLeaseRequest request;
    request.set_job_id(lease.job_id);
    request.set_lease_token(lease.token);
    *request.mutable_metrics() = MetricsToProto(result->metrics);
    for (const engine::ArtifactFile& file : result->artifacts) {
      absl::StatusOr<client::UploadResult> uploaded = blobs_.UploadFile(file.path, "artifact");
      if (!uploaded.ok()) {
        return Finish(lease, absl::Status(uploaded.status().code(),
                                          absl::StrCat("uploading ", file.kind, " artifact: ",
                                                       uploaded.status().message())));
      }
      v1::Artifact* artifact = request.add_artifacts();
      artifact->set_kind(file.kind);
      artifact->set_digest(uploaded->digest);
      artifact->set_size_bytes(uploaded->size_bytes);
      artifact->set_filename(fs::path(file.path).filename().string());
    }
    v1::CompleteLeaseResponse response;
    absl::Status s = Report(
        lease, [&](grpc::ClientContext& c) { return stub_->CompleteLease(&c, request, &response); },
        "CompleteLease");
    if (lease.lost) return LeaseOutcome::kLeaseLost;
    if (!s.ok()) return s;
    spdlog::info("job {}: completed ({} artifacts, quantized top-1 {:.4f})", lease.job_id,
                 request.artifacts_size(), request.metrics().quantized_top1());
    return LeaseOutcome::kCompleted;
  }

  const absl::Status& error = result.status();
  v1::FailLeaseRequest request;
  request.set_job_id(lease.job_id);
  request.set_lease_token(lease.token);
  LeaseOutcome outcome = LeaseOutcome::kFailed;
  if (error.code() == absl::StatusCode::kCancelled && lease.cancel_requested) {
    request.set_cancelled(true);
    request.set_retryable(false);
    request.set_error("cancelled on request");
    outcome = LeaseOutcome::kCancelled;
  } else if (error.code() == absl::StatusCode::kCancelled && stopping_) {
    request.set_retryable(true);
    request.set_error(absl::StrCat("worker ", options_.worker_id, " shut down during the job"));
    outcome = LeaseOutcome::kAbandoned;
  } else {
    request.set_retryable(engine::IsRetryableFailure(error));
    request.set_error(std::string(error.message()));
  }
  v1::FailLeaseResponse response;
  absl::Status s = Report(
      lease, [&](grpc::ClientContext& c) { return stub_->FailLease(&c, request, &response); },
      "FailLease");
  if (lease.lost) return LeaseOutcome::kLeaseLost;
  if (!s.ok()) return s;
  spdlog::info("job {}: {} ({}{})", lease.job_id, LeaseOutcomeName(outcome), request.error(),
               request.retryable() ? ", retryable" : "");
  return outcome;
}

LeaseOutcome WorkerLoop::RunLease(const v1::AcquireLeaseResponse& response) {
  const v1::Job& job = response.job();
  auto lease = std::make_shared<Lease>();
  lease->job_id = job.id();
  lease->token = response.lease_token();
  lease->checkpoint_digest = job.checkpoint_digest();  // keep reporting it until a newer one
  const std::string dir_name =
      IsSafeFileName(job.id()) ? job.id() : DigestOf(job.id()).substr(7, 16);
  lease->work_dir = (fs::path(options_.cache_dir) / "work" /
                     absl::StrCat(dir_name, "-", std::max(job.attempt(), 1)))
                        .string();
  std::error_code ec;
  fs::remove_all(lease->work_dir, ec);
  fs::create_directories(lease->work_dir, ec);
  spdlog::info("job {}: leased (attempt {}, model {}, dataset {}, W{}A{})", job.id(), job.attempt(),
               job.spec().model(), job.spec().dataset(), job.spec().weight_bits(),
               job.spec().activation_bits());

  std::thread heartbeat([this, lease] { HeartbeatLoop(*lease); });

  absl::StatusOr<engine::JobRun> config =
      stopping_ ? absl::CancelledError("stopped before the job started")
                : Prepare(response, lease->work_dir);
  absl::StatusOr<engine::JobResult> result = absl::UnknownError("not run");
  bool abandoned = false;
  if (!config.ok()) {
    result = config.status();
  } else if (stopping_ || lease->lost) {
    result = absl::CancelledError("stopped before the job started");
  } else {
    engine::JobCallbacks callbacks;
    callbacks.on_progress = [lease](const engine::ProgressEvent& event) {
      std::lock_guard<std::mutex> lock(lease->mutex);
      lease->progress = ProgressToProto(event);
    };
    callbacks.on_checkpoint = [this, lease](const std::string& path) {
      absl::Status s = UploadCheckpoint(*lease, path);
      if (!s.ok())
        spdlog::warn("job {}: checkpoint not uploaded: {}", lease->job_id,
                     std::string(s.message()));
    };
    callbacks.should_stop = [this, lease] {
      return lease->cancel_requested.load() || lease->lost.load() || stopping_.load();
    };

    // The engine runs on its own thread so a Stop() can give up on an engine that does not poll.
    struct Outcome {
      std::mutex mutex;
      std::condition_variable done_cv;
      bool done = false;
      absl::StatusOr<engine::JobResult> result = absl::UnknownError("not run");
    };
    auto out = std::make_shared<Outcome>();
    std::thread engine_thread([runner = runner_, config = *config, callbacks, out] {
      absl::StatusOr<engine::JobResult> r = RunCatching(runner, config, callbacks);
      std::lock_guard<std::mutex> lock(out->mutex);
      out->result = std::move(r);
      out->done = true;
      out->done_cv.notify_all();
    });
    std::optional<Clock::time_point> stop_seen;
    std::unique_lock<std::mutex> lock(out->mutex);
    while (!out->done) {
      out->done_cv.wait_for(lock, std::chrono::milliseconds(200));
      if (out->done) break;
      if (stopping_ && !stop_seen) stop_seen = Clock::now();
      if (stop_seen && Clock::now() - *stop_seen > options_.stop_grace) {
        abandoned = true;
        break;
      }
    }
    lock.unlock();
    if (abandoned) {
      spdlog::error("job {}: the engine did not stop within {} ms; abandoning it", job.id(),
                    options_.stop_grace.count());
      engine_stuck_ = true;
      engine_thread.detach();
      result = absl::CancelledError("worker stopping");
    } else {
      engine_thread.join();
      result = std::move(out->result);
    }
  }

  absl::StatusOr<LeaseOutcome> outcome = Finish(*lease, result);
  {
    std::lock_guard<std::mutex> lock(lease->wake_mutex);
    lease->done = true;
  }
  lease->wake.notify_all();
  heartbeat.join();
  if (!abandoned) fs::remove_all(lease->work_dir, ec);
  if (!outcome.ok()) {
    spdlog::error("job {}: could not report the result: {}", job.id(),
                  std::string(outcome.status().message()));
    return LeaseOutcome::kFailed;
  }
  return *outcome;
}

}  // namespace qnet::worker
