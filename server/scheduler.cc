#include "server/scheduler.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "server/proto_time.h"
#include "spdlog/spdlog.h"

namespace qnet::server {
namespace {

using qnet::v1::Job;
using qnet::v1::JobState;

// Waits for a durable write; the caller must not hold the scheduler lock.
absl::Status Await(std::future<absl::Status>& f) {
  absl::Status s = f.get();
  if (!s.ok()) {
    return absl::UnavailableError(
        absl::StrCat("could not save the job durably (", s.message(), "); retry later"));
  }
  return s;
}

absl::Status StaleLease(absl::string_view job_id, absl::string_view why) {
  return absl::FailedPreconditionError(
      absl::StrCat("lease for job ", job_id, " is not current: ", why, "; stop working on it"));
}

}  // namespace

Scheduler::Scheduler(JobStore* store, const Clock* clock, SchedulerOptions options,
                     MetricsRegistry* metrics)
    : store_(store), clock_(clock), options_(options), metrics_(metrics) {}

absl::Status Scheduler::Recover() {
  absl::StatusOr<int64_t> max_seq = store_->MaxSeq();
  if (!max_seq.ok()) return max_seq.status();
  absl::StatusOr<std::map<JobState, int64_t>> counts = store_->CountByState();
  if (!counts.ok()) return counts.status();
  std::vector<JobRecord> records;
  if (absl::Status s = store_->ForEachActive([&](JobRecord r) { records.push_back(std::move(r)); });
      !s.ok()) {
    return s;
  }
  absl::MutexLock lock(&mu_);
  next_seq_ = *max_seq + 1;
  counts_ = *counts;
  const absl::Time now = clock_->Now();
  int running = 0;
  for (JobRecord& r : records) {
    std::string id = r.job.id();
    auto [it, inserted] = active_.try_emplace(id);
    if (!inserted) continue;
    Entry& e = it->second;
    e.rec = std::move(r);
    e.version = next_version_++;
    if (!e.rec.job.request_id().empty()) request_ids_[e.rec.job.request_id()] = id;
    if (e.rec.job.state() == qnet::v1::QUEUED) {
      e.queued_since = FromTimestamp(e.rec.job.create_time());
      queue_.emplace(KeyOf(e), &e);
    } else {
      ++running;
      if (e.rec.lease_token.empty()) e.rec.lease_expire = now;  // no lease: expire at once
      lease_expiry_.emplace(e.rec.lease_expire, id);
      SeeWorker(e.rec.job.worker_id(), +1);
    }
  }
  spdlog::info("job store: {} queued and {} running jobs recovered ({} jobs in all)", queue_.size(),
               running, *max_seq);
  return absl::OkStatus();
}

std::string Scheduler::NewId() { return absl::StrFormat("j-%016x", absl::Uniform<uint64_t>(rng_)); }

void Scheduler::Touch(Entry& e) {
  e.version = next_version_++;
  watch_cv_.SignalAll();
}

void Scheduler::SetState(Entry& e, JobState state) {
  --counts_[e.rec.job.state()];
  ++counts_[state];
  e.rec.job.set_state(state);
}

void Scheduler::Enqueue(Entry& e) {
  SetState(e, qnet::v1::QUEUED);
  e.queued_since = clock_->Now();
  queue_.emplace(KeyOf(e), &e);
  work_cv_.Signal();
}

void Scheduler::SeeWorker(const std::string& worker_id, int lease_delta) {
  if (worker_id.empty()) return;
  Worker& w = workers_[worker_id];
  if (lease_delta >= 0) w.last_seen = clock_->Now();  // a lease ending is not a sign of life
  w.leases = std::max(0, w.leases + lease_delta);
}

void Scheduler::EndLease(Entry& e) {
  if (e.rec.job.state() != qnet::v1::RUNNING) return;
  lease_expiry_.erase({e.rec.lease_expire, e.rec.job.id()});
  SeeWorker(e.rec.job.worker_id(), -1);
  e.rec.lease_token.clear();
  e.rec.lease_expire = absl::UnixEpoch();
}

std::future<absl::Status> Scheduler::Finish(Entry& e, JobState state, std::string error,
                                            Job* final_job) {
  const absl::Time now = clock_->Now();
  EndLease(e);
  if (e.rec.job.state() == qnet::v1::QUEUED) queue_.erase(KeyOf(e));
  SetState(e, state);
  e.rec.job.set_error(std::move(error));
  e.rec.job.set_cancel_requested(e.rec.job.cancel_requested() && state == qnet::v1::CANCELLED);
  *e.rec.job.mutable_end_time() = ToTimestamp(now);
  if (metrics_ != nullptr) {
    std::optional<absl::Duration> run_time;
    if (e.rec.job.has_start_time()) run_time = now - FromTimestamp(e.rec.job.start_time());
    metrics_->JobFinished(state, run_time);
  }
  Touch(e);
  std::future<absl::Status> saved = store_->Save(e.rec);
  if (final_job != nullptr) *final_job = e.rec.job;

  const std::string id = e.rec.job.id();
  Finished& f = finished_[id];
  f.job = std::move(e.rec.job);
  f.version = e.version;
  finished_order_.push_back(id);
  active_.erase(id);
  while (finished_order_.size() > options_.finished_cache_size) {
    auto it = finished_.find(finished_order_.front());
    if (it != finished_.end()) {
      request_ids_.erase(it->second.job.request_id());
      finished_.erase(it);
    }
    finished_order_.pop_front();
  }
  return saved;
}

std::future<absl::Status> Scheduler::RetryOrFail(Entry& e, absl::string_view reason) {
  const int attempt = e.rec.job.attempt();
  if (attempt >= options_.max_attempts) {
    return Finish(e, qnet::v1::FAILED,
                  absl::StrCat(reason, " on attempt ", attempt, " of ", options_.max_attempts,
                               "; no attempts left (server flag --max-attempts)"));
  }
  spdlog::warn("job {}: {} on attempt {}; re-queued for attempt {}", e.rec.job.id(),
               std::string(reason), attempt, attempt + 1);
  EndLease(e);
  e.rec.job.set_attempt(attempt + 1);
  e.rec.job.clear_worker_id();
  Enqueue(e);
  Touch(e);
  return store_->Save(e.rec);
}

absl::StatusOr<Job> Scheduler::Submit(const qnet::v1::JobSpec& spec,
                                      const std::string& request_id) {
  // A request_id not in memory may belong to a finished job evicted from the cache.
  std::optional<JobRecord> stored;
  if (!request_id.empty()) {
    bool in_memory;
    {
      absl::MutexLock lock(&mu_);
      in_memory = request_ids_.contains(request_id) || pending_requests_.contains(request_id);
    }
    if (!in_memory) {
      absl::StatusOr<std::optional<JobRecord>> r = store_->FindByRequestId(request_id);
      if (!r.ok()) return r.status();
      if (r->has_value()) return (*r)->job;
    }
  }

  mu_.Lock();
  // Wait out a concurrent submit of the same request_id, then return what it made.
  while (!request_id.empty() && pending_requests_.contains(request_id) && !shutdown_) {
    submit_cv_.Wait(&mu_);
  }
  if (shutdown_) {
    mu_.Unlock();
    return absl::UnavailableError("server is shutting down; submit again once it is back");
  }
  if (!request_id.empty()) {
    if (auto it = request_ids_.find(request_id); it != request_ids_.end()) {
      const std::string id = it->second;
      std::optional<Job> job = FindInMemory(id);
      mu_.Unlock();
      if (job.has_value()) return *std::move(job);
      return Get(id);
    }
  }
  const int64_t queued = static_cast<int64_t>(queue_.size()) + pending_submits_;
  if (queued >= options_.max_queued) {
    mu_.Unlock();
    return absl::ResourceExhaustedError(absl::StrCat(
        "queue is full: ", queued,
        " jobs are waiting (server flag --max-queued=", options_.max_queued, "); retry later"));
  }
  JobRecord rec;
  rec.seq = next_seq_++;
  Job& job = rec.job;
  job.set_id(NewId());
  *job.mutable_spec() = spec;
  job.set_state(qnet::v1::QUEUED);
  job.set_attempt(1);
  job.set_request_id(request_id);
  *job.mutable_create_time() = ToTimestamp(clock_->Now());
  if (!request_id.empty()) pending_requests_.insert(request_id);
  ++pending_submits_;
  std::future<absl::Status> saved = store_->Create(rec);
  mu_.Unlock();

  absl::Status s = Await(saved);

  absl::MutexLock lock(&mu_);
  --pending_submits_;
  if (!request_id.empty()) {
    pending_requests_.erase(request_id);
    submit_cv_.SignalAll();
  }
  if (!s.ok()) return s;
  Job result = rec.job;
  const std::string id = rec.job.id();
  Entry& e = active_[id];
  e.rec = std::move(rec);
  ++counts_[qnet::v1::QUEUED];
  e.queued_since = FromTimestamp(e.rec.job.create_time());
  queue_.emplace(KeyOf(e), &e);
  if (!request_id.empty()) request_ids_[request_id] = id;
  Touch(e);
  work_cv_.Signal();
  if (metrics_ != nullptr) metrics_->JobSubmitted();
  return result;
}

std::optional<Job> Scheduler::FindInMemory(absl::string_view id) {
  if (auto it = active_.find(id); it != active_.end()) return it->second.rec.job;
  if (auto it = finished_.find(id); it != finished_.end()) return it->second.job;
  return std::nullopt;
}

absl::StatusOr<Job> Scheduler::Get(absl::string_view id) {
  {
    absl::ReaderMutexLock lock(&mu_);
    std::optional<Job> job = FindInMemory(id);
    if (job.has_value()) return *std::move(job);
  }
  absl::StatusOr<std::optional<JobRecord>> r = store_->Get(id);
  if (!r.ok()) return r.status();
  if (!r->has_value()) return absl::NotFoundError(absl::StrCat("job ", id, " not found"));
  return (*r)->job;
}

absl::StatusOr<JobList> Scheduler::List(JobState state, int64_t before_seq, int limit) {
  absl::StatusOr<JobPage> page = store_->List(state, before_seq, limit);
  if (!page.ok()) return page.status();
  JobList list;
  list.next_before_seq = page->next_before_seq;
  list.jobs.reserve(page->records.size());
  absl::ReaderMutexLock lock(&mu_);
  for (JobRecord& r : page->records) {
    // The in-memory copy may be a change newer than the stored one.
    std::optional<Job> live = FindInMemory(r.job.id());
    if (live.has_value() && (state == qnet::v1::JOB_STATE_UNSPECIFIED || live->state() == state)) {
      list.jobs.push_back(*std::move(live));
    } else {
      list.jobs.push_back(std::move(r.job));
    }
  }
  return list;
}

absl::StatusOr<Job> Scheduler::Cancel(absl::string_view id) {
  std::future<absl::Status> saved;
  Job result;
  {
    absl::MutexLock lock(&mu_);
    auto it = active_.find(id);
    if (it == active_.end()) {
      std::optional<Job> done = FindInMemory(id);
      if (!done.has_value()) {
        mu_.Unlock();
        absl::StatusOr<std::optional<JobRecord>> r = store_->Get(id);
        mu_.Lock();
        if (!r.ok()) return r.status();
        if (!r->has_value()) return absl::NotFoundError(absl::StrCat("job ", id, " not found"));
        done = (*r)->job;
      }
      return absl::FailedPreconditionError(absl::StrCat("job ", id, " already ended (",
                                                        qnet::v1::JobState_Name(done->state()),
                                                        "); there is nothing to cancel"));
    }
    Entry& e = it->second;
    if (e.rec.job.state() == qnet::v1::QUEUED) {
      saved = Finish(e, qnet::v1::CANCELLED, "cancelled by request before it started", &result);
    } else {
      if (e.rec.job.cancel_requested()) return e.rec.job;
      e.rec.job.set_cancel_requested(true);
      Touch(e);
      result = e.rec.job;
      saved = store_->Save(e.rec);
    }
  }
  if (absl::Status s = Await(saved); !s.ok()) return s;
  return result;
}

absl::StatusOr<JobSnapshot> Scheduler::WaitForChange(absl::string_view id, uint64_t seen_version,
                                                     absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  while (true) {
    JobSnapshot snap;
    bool found = false;
    if (auto it = active_.find(id); it != active_.end()) {
      snap = {it->second.rec.job, it->second.version};
      found = true;
    } else if (auto fit = finished_.find(id); fit != finished_.end()) {
      return JobSnapshot{fit->second.job, fit->second.version};
    }
    if (!found) {
      mu_.Unlock();
      absl::StatusOr<std::optional<JobRecord>> r = store_->Get(id);
      mu_.Lock();
      if (!r.ok()) return r.status();
      if (!r->has_value()) return absl::NotFoundError(absl::StrCat("job ", id, " not found"));
      // Finished long ago (or submitted a moment ago): report what is stored.
      return JobSnapshot{(*r)->job, UINT64_MAX};
    }
    if (snap.version != seen_version) return snap;
    if (shutdown_) {
      return absl::UnavailableError("server is shutting down; watch again once it is back");
    }
    if (absl::Now() >= deadline) return snap;
    watch_cv_.WaitWithDeadline(&mu_, deadline);
  }
}

absl::StatusOr<std::optional<Lease>> Scheduler::Acquire(const std::string& worker_id,
                                                        const std::string& device,
                                                        absl::Duration wait,
                                                        const std::function<bool()>& cancelled) {
  const absl::Time deadline =
      absl::Now() + std::clamp(wait, absl::ZeroDuration(), options_.max_wait);
  std::future<absl::Status> saved;
  Lease lease;
  {
    absl::MutexLock lock(&mu_);
    SeeWorker(worker_id, 0);
    while (true) {
      if (shutdown_) {
        return absl::UnavailableError("server is shutting down; retry against the new instance");
      }
      ExpireLeasesLocked();
      if (!queue_.empty()) break;
      if (absl::Now() >= deadline || (cancelled && cancelled())) return std::optional<Lease>();
      // Wake up now and then to notice a client that went away.
      work_cv_.WaitWithDeadline(&mu_, std::min(deadline, absl::Now() + absl::Milliseconds(250)));
    }
    Entry& e = *queue_.begin()->second;
    queue_.erase(queue_.begin());
    const absl::Time now = clock_->Now();
    if (metrics_ != nullptr) metrics_->QueueWait(now - e.queued_since);
    SetState(e, qnet::v1::RUNNING);
    Job& job = e.rec.job;
    job.set_worker_id(worker_id);
    if (!job.has_start_time()) *job.mutable_start_time() = ToTimestamp(now);
    e.rec.lease_token =
        absl::StrFormat("%016x%016x", absl::Uniform<uint64_t>(rng_), absl::Uniform<uint64_t>(rng_));
    e.rec.lease_expire = now + options_.lease_duration;
    lease_expiry_.emplace(e.rec.lease_expire, job.id());
    SeeWorker(worker_id, +1);
    Touch(e);
    lease = {job, e.rec.lease_token, e.rec.lease_expire};
    saved = store_->Save(e.rec);
    spdlog::info("job {} attempt {} leased to {} ({})", job.id(), job.attempt(), worker_id, device);
  }
  if (absl::Status s = Await(saved); !s.ok()) {
    // Not durable: take the lease back so the job is not lost to a worker that never heard of it.
    absl::MutexLock lock(&mu_);
    auto it = active_.find(lease.job.id());
    if (it != active_.end() && it->second.rec.lease_token == lease.token) {
      EndLease(it->second);
      it->second.rec.job.clear_worker_id();
      Enqueue(it->second);
      Touch(it->second);
    }
    return s;
  }
  return std::optional<Lease>(std::move(lease));
}

absl::StatusOr<Scheduler::Entry*> Scheduler::FindLease(absl::string_view job_id,
                                                       absl::string_view token) {
  ExpireLeasesLocked();
  auto it = active_.find(job_id);
  if (it == active_.end()) {
    std::optional<Job> done = FindInMemory(job_id);
    if (done.has_value()) {
      return StaleLease(job_id, absl::StrCat("the job already ended (",
                                             qnet::v1::JobState_Name(done->state()), ")"));
    }
    return StaleLease(job_id, "no such unfinished job on this server");
  }
  Entry& e = it->second;
  if (e.rec.job.state() != qnet::v1::RUNNING) {
    return StaleLease(job_id, "the lease expired and the job was re-queued");
  }
  if (token.empty() || e.rec.lease_token != token) {
    return StaleLease(
        job_id, absl::StrCat("the job is leased under another token (attempt ", e.rec.job.attempt(),
                             ", worker ", e.rec.job.worker_id(), ")"));
  }
  return &e;
}

absl::StatusOr<HeartbeatReply> Scheduler::Heartbeat(absl::string_view job_id,
                                                    absl::string_view token,
                                                    const qnet::v1::Progress* progress,
                                                    const std::string& checkpoint_digest) {
  std::future<absl::Status> saved;
  HeartbeatReply reply;
  {
    absl::MutexLock lock(&mu_);
    absl::StatusOr<Entry*> found = FindLease(job_id, token);
    if (!found.ok()) return found.status();
    Entry& e = **found;
    lease_expiry_.erase({e.rec.lease_expire, e.rec.job.id()});
    e.rec.lease_expire = clock_->Now() + options_.lease_duration;
    lease_expiry_.emplace(e.rec.lease_expire, e.rec.job.id());
    if (progress != nullptr) *e.rec.job.mutable_progress() = *progress;
    if (!checkpoint_digest.empty()) e.rec.job.set_checkpoint_digest(checkpoint_digest);
    SeeWorker(e.rec.job.worker_id(), 0);
    if (metrics_ != nullptr && progress != nullptr && !e.rec.job.worker_id().empty()) {
      metrics_->SetWorkerThroughput(e.rec.job.worker_id(), progress->images_per_second());
      if (progress->device_memory_bytes() > 0) {
        metrics_->SetWorkerDeviceMemory(e.rec.job.worker_id(),
                                        static_cast<double>(progress->device_memory_bytes()));
      }
    }
    Touch(e);
    reply = {e.rec.job.cancel_requested(), e.rec.lease_expire};
    saved = store_->Save(e.rec);
  }
  if (absl::Status s = Await(saved); !s.ok()) return s;
  return reply;
}

absl::Status Scheduler::Complete(
    absl::string_view job_id, absl::string_view token, const qnet::v1::Metrics& metrics,
    const google::protobuf::RepeatedPtrField<qnet::v1::Artifact>& artifacts) {
  std::future<absl::Status> saved;
  {
    absl::MutexLock lock(&mu_);
    absl::StatusOr<Entry*> found = FindLease(job_id, token);
    if (!found.ok()) return found.status();
    Entry& e = **found;
    SeeWorker(e.rec.job.worker_id(), 0);
    *e.rec.job.mutable_metrics() = metrics;
    *e.rec.job.mutable_artifacts() = artifacts;
    spdlog::info("job {} succeeded on attempt {}", e.rec.job.id(), e.rec.job.attempt());
    saved = Finish(e, qnet::v1::SUCCEEDED, "");
  }
  return Await(saved);
}

absl::Status Scheduler::Fail(absl::string_view job_id, absl::string_view token,
                             const std::string& error, bool retryable, bool cancelled) {
  std::future<absl::Status> saved;
  {
    absl::MutexLock lock(&mu_);
    absl::StatusOr<Entry*> found = FindLease(job_id, token);
    if (!found.ok()) return found.status();
    Entry& e = **found;
    SeeWorker(e.rec.job.worker_id(), 0);
    const std::string reason = error.empty() ? "the worker reported a failure" : error;
    if (cancelled) {
      spdlog::info("job {} cancelled by its worker", e.rec.job.id());
      saved = Finish(e, qnet::v1::CANCELLED, error.empty() ? "cancelled by request" : error);
    } else if (retryable) {
      saved = RetryOrFail(e, reason);
    } else {
      spdlog::warn("job {} failed on attempt {}: {}", e.rec.job.id(), e.rec.job.attempt(), reason);
      saved = Finish(e, qnet::v1::FAILED, reason);
    }
  }
  return Await(saved);
}

int Scheduler::ExpireLeases() {
  absl::MutexLock lock(&mu_);
  return ExpireLeasesLocked();
}

int Scheduler::ExpireLeasesLocked() {
  const absl::Time now = clock_->Now();
  int expired = 0;
  while (!lease_expiry_.empty() && lease_expiry_.begin()->first <= now) {
    const std::string id = lease_expiry_.begin()->second;
    auto it = active_.find(id);
    if (it == active_.end()) {  // cannot happen; never loop forever on it
      lease_expiry_.erase(lease_expiry_.begin());
      continue;
    }
    Entry& e = it->second;
    ++expired;
    if (metrics_ != nullptr) metrics_->LeaseExpired();
    const std::string worker =
        e.rec.job.worker_id().empty() ? std::string("unknown") : e.rec.job.worker_id();
    if (e.rec.job.cancel_requested()) {
      spdlog::info("job {}: lease expired after a cancel request; cancelled", id);
      Finish(e, qnet::v1::CANCELLED,
             absl::StrCat("cancelled by request (worker ", worker,
                          " stopped heart-beating before confirming)"));
    } else {
      RetryOrFail(e, absl::StrCat("lease expired (worker ", worker, " stopped heart-beating)"));
    }
  }
  PruneWorkers(now);
  return expired;
}

void Scheduler::PruneWorkers(absl::Time now) {
  for (auto it = workers_.begin(); it != workers_.end();) {
    if (it->second.leases == 0 && now - it->second.last_seen > options_.lease_duration) {
      if (metrics_ != nullptr) metrics_->RemoveWorker(it->first);
      workers_.erase(it++);
    } else {
      ++it;
    }
  }
}

void Scheduler::Shutdown() {
  absl::MutexLock lock(&mu_);
  shutdown_ = true;
  work_cv_.SignalAll();
  watch_cv_.SignalAll();
  submit_cv_.SignalAll();
}

SchedulerStats Scheduler::Stats() {
  absl::MutexLock lock(&mu_);
  PruneWorkers(clock_->Now());
  SchedulerStats stats;
  for (const auto& [state, n] : counts_) {
    if (state != qnet::v1::JOB_STATE_UNSPECIFIED) stats.jobs[state] = n;
  }
  stats.queued = static_cast<int64_t>(queue_.size());
  for (const auto& [id, w] : workers_) {
    (w.leases > 0 ? stats.workers_busy : stats.workers_idle)++;
  }
  return stats;
}

}  // namespace qnet::server
