#include "server/scheduling/scheduler.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "server/scheduling/proto_time.h"
#include "spdlog/spdlog.h"

namespace qnet::server {
namespace {

using qnet::v1::Job;
using qnet::v1::JobState;

// Jobs List reads from the store at a time.
constexpr int kStorePageJobs = 64;

// A write the store refused: UNAVAILABLE when retrying can help (the store's own code for I/O
// trouble), INTERNAL when the store and the scheduler disagree.
absl::Status StoreRefused(const absl::Status& cause, const std::string& message) {
  return absl::IsUnavailable(cause) ? absl::UnavailableError(message)
                                    : absl::InternalError(message);
}

absl::Status NotStored(absl::string_view what, absl::string_view job_id, JobState kept,
                       const absl::Status& cause) {
  return StoreRefused(cause, absl::StrCat("could not store ", what, " of job ", job_id, " (",
                                          cause.message(), "); nothing changed, the job is still ",
                                          qnet::v1::JobState_Name(kept), "; retry later"));
}

absl::Status StaleLease(absl::string_view job_id, absl::string_view why) {
  return absl::FailedPreconditionError(
      absl::StrCat("lease for job ", job_id, " is not current: ", why, "; stop working on it"));
}

}  // namespace

Scheduler::Scheduler(JobStore* store, const Clock* clock, SchedulerOptions options,
                     MetricsRegistry* metrics)
    : store_(store), clock_(clock), options_(std::move(options)), metrics_(metrics) {
  if (options_.quotas.submits_per_minute > 0) {
    submit_rate_.emplace(options_.quotas.submits_per_minute, clock_);
  }
}

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
    CountLoad(e.rec.job, +1);
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

void Scheduler::CountLoad(const Job& job, int delta) {
  OwnerLoad& load = load_[job.owner()];
  (job.state() == qnet::v1::RUNNING ? load.running : load.queued) += delta;
  if (load.queued == 0 && load.running == 0) load_.erase(job.owner());
}

bool Scheduler::Exempt(absl::string_view owner) const {
  return options_.quotas.exempt && options_.quotas.exempt(owner);
}

absl::Status Scheduler::CheckSubmitQuota(const std::string& owner) {
  if (Exempt(owner)) return absl::OkStatus();
  const int64_t limit = options_.quotas.queued_jobs;
  if (limit > 0) {
    const auto it = load_.find(owner);
    const int64_t queued = it == load_.end() ? 0 : it->second.queued;
    if (queued >= limit) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "queued-jobs quota: ", owner, " has ", queued, " queued jobs and the limit is ", limit,
          " (qnetd --quota-queued-jobs); wait until some start, or cancel some"));
    }
  }
  if (submit_rate_.has_value()) {
    if (std::optional<absl::Duration> wait = submit_rate_->Take(owner)) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "submit-rate quota: ", owner, " used all ", submit_rate_->per_minute(),
          " submits per minute (qnetd --quota-submits-per-minute); the next is allowed in ",
          absl::FormatDuration(absl::Ceil(*wait, absl::Milliseconds(100)))));
    }
  }
  return absl::OkStatus();
}

Scheduler::Entry* Scheduler::NextLeasable() {
  const int64_t limit = options_.quotas.running_jobs;
  for (const auto& [key, e] : queue_) {
    if (limit <= 0) return e;
    const std::string& owner = e->rec.job.owner();
    const auto it = load_.find(owner);
    if (it == load_.end() || it->second.running < limit || Exempt(owner)) return e;
  }
  return nullptr;
}

void Scheduler::Touch(Entry& e) {
  e.version = next_version_++;
  if (auto it = watchers_.find(e.rec.job.id()); it != watchers_.end()) it->second.cv.SignalAll();
}

void Scheduler::SeeWorker(const std::string& worker_id, int lease_delta) {
  if (worker_id.empty()) return;
  Worker& w = workers_[worker_id];
  if (lease_delta >= 0) w.last_seen = clock_->Now();  // a lease ending is not a sign of life
  w.leases = std::max(0, w.leases + lease_delta);
}

JobRecord Scheduler::AsFinished(JobRecord rec, JobState state, std::string error) const {
  rec.job.set_state(state);
  rec.job.set_error(std::move(error));
  rec.job.set_cancel_requested(rec.job.cancel_requested() && state == qnet::v1::CANCELLED);
  *rec.job.mutable_end_time() = ToTimestamp(clock_->Now());
  rec.lease_token.clear();
  rec.lease_expire = absl::UnixEpoch();
  return rec;
}

JobRecord Scheduler::AsRetriedOrFailed(JobRecord rec, absl::string_view reason) const {
  const int attempt = rec.job.attempt();
  if (attempt >= options_.max_attempts) {
    return AsFinished(std::move(rec), qnet::v1::FAILED,
                      absl::StrCat(reason, " on attempt ", attempt, " of ", options_.max_attempts,
                                   "; no attempts left (server flag --max-attempts)"));
  }
  rec.job.set_state(qnet::v1::QUEUED);
  rec.job.set_attempt(attempt + 1);
  rec.job.clear_worker_id();
  rec.lease_token.clear();
  rec.lease_expire = absl::UnixEpoch();
  return rec;
}

Scheduler::Change Scheduler::BeginChange(Entry& e, JobRecord next) {
  if (e.rec.job.state() == qnet::v1::QUEUED) queue_.erase(KeyOf(e));
  e.writing = true;
  StoreWrite saved = store_->Save(next);
  return Change{.id = e.rec.job.id(), .next = std::move(next), .saved = std::move(saved)};
}

void Scheduler::EndChange(Change& c, const absl::Status& stored) {
  // The entry is still there: only a stored change removes it, and this is the job's only one.
  Entry& e = active_.find(c.id)->second;
  e.writing = false;
  write_cv_.SignalAll();
  if (stored.ok()) {
    Apply(e, std::move(c.next));
  } else if (e.rec.job.state() == qnet::v1::QUEUED) {
    queue_.emplace(KeyOf(e), &e);
    work_cv_.Signal();
  }
}

absl::Status Scheduler::AwaitChange(Change& c, absl::string_view what) {
  const absl::Status stored = c.saved.Wait();
  absl::MutexLock lock(&mu_);
  EndChange(c, stored);
  if (stored.ok()) return stored;
  const JobState kept = active_.find(c.id)->second.rec.job.state();  // not applied: still active
  spdlog::error("job {}: {} not stored: {}", c.id, std::string(what),
                std::string(stored.message()));
  return NotStored(what, c.id, kept, stored);
}

void Scheduler::Apply(Entry& e, JobRecord next) {
  const std::string id = e.rec.job.id();
  const JobState was = e.rec.job.state();
  const JobState state = next.job.state();
  const absl::Time now = clock_->Now();
  if (was == qnet::v1::QUEUED) {  // BeginChange took it off the queue
    if (state == qnet::v1::RUNNING && metrics_ != nullptr) {
      metrics_->QueueWait(now - e.queued_since);
    }
  } else if (was == qnet::v1::RUNNING) {
    lease_expiry_.erase({e.rec.lease_expire, id});
    SeeWorker(e.rec.job.worker_id(), -1);
  }
  --counts_[was];
  ++counts_[state];
  CountLoad(e.rec.job, -1);
  e.rec = std::move(next);
  Touch(e);
  if (state == qnet::v1::QUEUED) {
    if (was != qnet::v1::QUEUED) e.queued_since = now;
    queue_.emplace(KeyOf(e), &e);
    work_cv_.Signal();
  } else if (state == qnet::v1::RUNNING) {
    lease_expiry_.emplace(e.rec.lease_expire, id);
    SeeWorker(e.rec.job.worker_id(), +1);
  }
  if (state == qnet::v1::QUEUED || state == qnet::v1::RUNNING) {
    CountLoad(e.rec.job, +1);
  } else {
    // A job of an owner at the running-jobs cap may be leasable now.
    if (was == qnet::v1::RUNNING) work_cv_.Signal();
    if (metrics_ != nullptr) {
      std::optional<absl::Duration> run_time;
      if (e.rec.job.has_start_time()) {
        run_time = FromTimestamp(e.rec.job.end_time()) - FromTimestamp(e.rec.job.start_time());
      }
      metrics_->JobFinished(state, run_time);
    }
    MoveToFinished(e);
  }
}

void Scheduler::MoveToFinished(Entry& e) {
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
}

void Scheduler::AwaitNoWrite(absl::string_view id) {
  while (true) {
    auto it = active_.find(id);
    if (it == active_.end() || !it->second.writing) return;
    write_cv_.Wait(&mu_);
  }
}

absl::StatusOr<Job> Scheduler::Submit(const qnet::v1::JobSpec& spec, const std::string& request_id,
                                      const std::string& owner) {
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
  if (absl::Status s = CheckSubmitQuota(owner); !s.ok()) {
    mu_.Unlock();
    return s;
  }
  JobRecord rec;
  rec.seq = next_seq_++;
  Job& job = rec.job;
  job.set_id(NewId());
  *job.mutable_spec() = spec;
  job.set_state(qnet::v1::QUEUED);
  job.set_attempt(1);
  job.set_request_id(request_id);
  job.set_owner(owner);
  *job.mutable_create_time() = ToTimestamp(clock_->Now());
  if (!request_id.empty()) pending_requests_.insert(request_id);
  ++pending_submits_;
  CountLoad(job, +1);  // held while the write is on its way, so concurrent submits see it
  StoreWrite saved = store_->Create(rec);
  mu_.Unlock();

  const absl::Status s = saved.Wait();

  absl::MutexLock lock(&mu_);
  --pending_submits_;
  if (!request_id.empty()) {
    pending_requests_.erase(request_id);
    submit_cv_.SignalAll();
  }
  if (!s.ok()) {
    CountLoad(rec.job, -1);
    spdlog::error("new job {} not stored: {}", rec.job.id(), std::string(s.message()));
    return StoreRefused(s, absl::StrCat("could not store the new job (", s.message(),
                                        "); it was not created; submit again later"));
  }
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

absl::StatusOr<JobList> Scheduler::List(JobState state, int64_t before_seq, int limit,
                                        absl::string_view owner) {
  JobList list;
  size_t bytes = 0;
  // Another owner's jobs are skipped, so a page may take several store pages to fill; store pages
  // are short, so a page that fills up by bytes reads few jobs it does not return.
  while (true) {
    absl::StatusOr<JobPage> page = store_->List(state, before_seq, std::min(limit, kStorePageJobs));
    if (!page.ok()) return page.status();
    absl::ReaderMutexLock lock(&mu_);
    for (JobRecord& r : page->records) {
      if (!owner.empty() && r.job.owner() != owner) continue;
      // The in-memory copy may be a change newer than the stored one.
      std::optional<Job> live = FindInMemory(r.job.id());
      Job job =
          live.has_value() && (state == qnet::v1::JOB_STATE_UNSPECIFIED || live->state() == state)
              ? *std::move(live)
              : std::move(r.job);
      bytes += job.ByteSizeLong();
      if (bytes > kMaxPageBytes && !list.jobs.empty()) {
        list.next_before_seq = r.seq + 1;  // the next page starts with this job
        return list;
      }
      list.jobs.push_back(std::move(job));
      if (static_cast<int>(list.jobs.size()) == limit) {
        // More may follow this one, on this page or the next.
        list.next_before_seq =
            (&r == &page->records.back() && page->next_before_seq == 0) ? 0 : r.seq;
        return list;
      }
    }
    if (page->next_before_seq == 0) return list;
    before_seq = page->next_before_seq;
  }
}

absl::StatusOr<Job> Scheduler::Cancel(absl::string_view id) {
  Change change;
  {
    absl::MutexLock lock(&mu_);
    AwaitNoWrite(id);
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
    JobRecord next;
    if (e.rec.job.state() == qnet::v1::QUEUED) {
      next = AsFinished(e.rec, qnet::v1::CANCELLED, "cancelled by request before it started");
    } else {
      if (e.rec.job.cancel_requested()) return e.rec.job;
      next = e.rec;
      next.job.set_cancel_requested(true);
    }
    change = BeginChange(e, std::move(next));
  }
  Job result = change.next.job;
  if (absl::Status s = AwaitChange(change, "the cancellation"); !s.ok()) return s;
  return result;
}

absl::StatusOr<Job> Scheduler::Delete(absl::string_view id) {
  auto still_active = [&](JobState state) {
    return absl::FailedPreconditionError(
        absl::StrCat("job ", id, " is ", qnet::v1::JobState_Name(state),
                     "; cancel it first (qnet cancel ", id, "), then delete it once it has ended"));
  };
  {
    absl::MutexLock lock(&mu_);
    AwaitNoWrite(id);
    if (auto it = active_.find(id); it != active_.end()) {
      return still_active(it->second.rec.job.state());
    }
  }
  absl::StatusOr<std::optional<JobRecord>> r = store_->Get(id);
  if (!r.ok()) return r.status();
  if (!r->has_value()) return absl::NotFoundError(absl::StrCat("job ", id, " not found"));
  Job job = std::move((*r)->job);
  // Stored but not in memory yet: a submit on its way.
  if (job.state() == qnet::v1::QUEUED || job.state() == qnet::v1::RUNNING) {
    return still_active(job.state());
  }
  // A finished job never changes again, so what was read is what goes.
  if (absl::Status s = store_->Delete(id).Wait(); !s.ok()) {
    if (absl::IsNotFound(s)) return absl::NotFoundError(absl::StrCat("job ", id, " not found"));
    spdlog::error("job {}: deletion not stored: {}", std::string(id), std::string(s.message()));
    return StoreRefused(s, absl::StrCat("could not delete job ", id, " (", s.message(),
                                        "); nothing changed; retry later"));
  }
  absl::MutexLock lock(&mu_);
  finished_.erase(id);  // finished_order_ skips ids no longer there
  if (auto it = request_ids_.find(job.request_id()); it != request_ids_.end() && it->second == id) {
    request_ids_.erase(it);
  }
  --counts_[job.state()];
  spdlog::info("job {} ({}) deleted", job.id(), qnet::v1::JobState_Name(job.state()));
  return job;
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
    Watchers& watchers = watchers_[id];
    ++watchers.waiting;
    watchers.cv.WaitWithDeadline(&mu_, deadline);
    ++watch_wakeups_;
    if (--watchers.waiting == 0) watchers_.erase(id);
  }
}

absl::StatusOr<std::optional<Lease>> Scheduler::Acquire(const std::string& worker_id,
                                                        const std::string& device,
                                                        absl::Duration wait,
                                                        const std::function<bool()>& cancelled,
                                                        const std::string& holder) {
  const absl::Time deadline =
      absl::Now() + std::clamp(wait, absl::ZeroDuration(), options_.max_wait);
  ExpireLeases();  // a job whose lease ran out since the last sweep is queued for this call
  Change change;
  {
    absl::MutexLock lock(&mu_);
    SeeWorker(worker_id, 0);
    Entry* next_entry = nullptr;
    while (true) {
      if (shutdown_) {
        return absl::UnavailableError("server is shutting down; retry against the new instance");
      }
      if ((next_entry = NextLeasable()) != nullptr) break;
      if (absl::Now() >= deadline || (cancelled && cancelled())) return std::optional<Lease>();
      // Wake up now and then to notice a client that went away.
      work_cv_.WaitWithDeadline(&mu_, std::min(deadline, absl::Now() + absl::Milliseconds(250)));
    }
    Entry& e = *next_entry;
    const absl::Time now = clock_->Now();
    JobRecord next = e.rec;
    next.job.set_state(qnet::v1::RUNNING);
    next.job.set_worker_id(worker_id);
    next.job.set_lease_holder(holder);
    if (!next.job.has_start_time()) *next.job.mutable_start_time() = ToTimestamp(now);
    next.lease_token =
        absl::StrFormat("%016x%016x", absl::Uniform<uint64_t>(rng_), absl::Uniform<uint64_t>(rng_));
    next.lease_expire = now + options_.lease_duration;
    change = BeginChange(e, std::move(next));
  }
  // A worker never hears of a lease that is not stored: the job stays QUEUED for the next one.
  Lease lease = {change.next.job, change.next.lease_token, change.next.lease_expire};
  if (absl::Status s = AwaitChange(change, "the lease"); !s.ok()) return s;
  spdlog::info("job {} attempt {} leased to {} ({})", lease.job.id(), lease.job.attempt(),
               worker_id, device);
  return std::optional<Lease>(std::move(lease));
}

std::vector<Job> Scheduler::LeasedBy(absl::string_view holder) {
  absl::ReaderMutexLock lock(&mu_);
  std::vector<Job> jobs;
  for (const auto& [expire, id] : lease_expiry_) {
    const auto it = active_.find(id);
    if (it != active_.end() && it->second.rec.job.lease_holder() == holder) {
      jobs.push_back(it->second.rec.job);
    }
  }
  return jobs;
}

absl::Status Scheduler::CheckLease(absl::string_view job_id, absl::string_view token) {
  absl::MutexLock lock(&mu_);
  return FindLease(job_id, token).status();
}

absl::StatusOr<Scheduler::Entry*> Scheduler::FindLease(absl::string_view job_id,
                                                       absl::string_view token) {
  AwaitNoWrite(job_id);
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
    // Which worker holds it is no business of whoever presents a wrong token.
    return StaleLease(job_id, absl::StrCat("the job is leased under another token (attempt ",
                                           e.rec.job.attempt(), ")"));
  }
  // Ran out but not swept yet: as good as expired (ExpireLeases re-queues it).
  if (e.rec.lease_expire <= clock_->Now()) {
    return StaleLease(job_id, "the lease expired; the job will be re-queued");
  }
  SeeWorker(e.rec.job.worker_id(), 0);  // a call on a live lease is a sign of life
  return &e;
}

absl::StatusOr<HeartbeatReply> Scheduler::Heartbeat(absl::string_view job_id,
                                                    absl::string_view token,
                                                    const qnet::v1::Progress* progress,
                                                    const std::string& checkpoint_digest) {
  Change change;
  {
    absl::MutexLock lock(&mu_);
    absl::StatusOr<Entry*> found = FindLease(job_id, token);
    if (!found.ok()) return found.status();
    Entry& e = **found;
    JobRecord next = e.rec;
    next.lease_expire = clock_->Now() + options_.lease_duration;
    if (progress != nullptr) *next.job.mutable_progress() = *progress;
    if (!checkpoint_digest.empty()) {
      next.job.set_checkpoint_digest(checkpoint_digest);
      next.job.set_checkpoint_attempt(next.job.attempt());
    }
    change = BeginChange(e, std::move(next));
  }
  const HeartbeatReply reply = {change.next.job.cancel_requested(), change.next.lease_expire};
  const std::string worker = change.next.job.worker_id();
  if (absl::Status s = AwaitChange(change, "the heartbeat"); !s.ok()) return s;
  if (metrics_ != nullptr && progress != nullptr && !worker.empty()) {
    metrics_->SetWorkerThroughput(worker, progress->images_per_second());
    if (progress->device_memory_bytes() > 0) {
      metrics_->SetWorkerDeviceMemory(worker, static_cast<double>(progress->device_memory_bytes()));
    }
  }
  return reply;
}

absl::Status Scheduler::Complete(
    absl::string_view job_id, absl::string_view token, const qnet::v1::Metrics& metrics,
    const google::protobuf::RepeatedPtrField<qnet::v1::Artifact>& artifacts) {
  Change change;
  {
    absl::MutexLock lock(&mu_);
    absl::StatusOr<Entry*> found = FindLease(job_id, token);
    if (!found.ok()) return found.status();
    Entry& e = **found;
    JobRecord next = AsFinished(e.rec, qnet::v1::SUCCEEDED, "");
    *next.job.mutable_metrics() = metrics;
    *next.job.mutable_artifacts() = artifacts;
    change = BeginChange(e, std::move(next));
  }
  const int attempt = change.next.job.attempt();
  if (absl::Status s = AwaitChange(change, "the completion"); !s.ok()) return s;
  spdlog::info("job {} succeeded on attempt {}", std::string(job_id), attempt);
  return absl::OkStatus();
}

absl::Status Scheduler::Fail(absl::string_view job_id, absl::string_view token,
                             const std::string& error, bool retryable, bool cancelled) {
  const std::string reason = error.empty() ? "the worker reported a failure" : error;
  Change change;
  {
    absl::MutexLock lock(&mu_);
    absl::StatusOr<Entry*> found = FindLease(job_id, token);
    if (!found.ok()) return found.status();
    Entry& e = **found;
    JobRecord next;
    if (cancelled) {
      next = AsFinished(e.rec, qnet::v1::CANCELLED, error.empty() ? "cancelled by request" : error);
    } else if (retryable) {
      next = AsRetriedOrFailed(e.rec, reason);
    } else {
      next = AsFinished(e.rec, qnet::v1::FAILED, reason);
    }
    change = BeginChange(e, std::move(next));
  }
  const qnet::v1::JobState state = change.next.job.state();
  const int attempt = change.next.job.attempt();
  if (absl::Status s = AwaitChange(change, "the failure report"); !s.ok()) return s;
  spdlog::warn("job {}: {}; now {} (attempt {})", std::string(job_id),
               cancelled ? "cancelled by its worker" : reason, qnet::v1::JobState_Name(state),
               attempt);
  return absl::OkStatus();
}

int Scheduler::ExpireLeases() {
  std::vector<Change> changes;
  {
    absl::MutexLock lock(&mu_);
    const absl::Time now = clock_->Now();
    for (auto it = lease_expiry_.begin(); it != lease_expiry_.end() && it->first <= now; ++it) {
      Entry& e = active_.find(it->second)->second;  // the lease table holds active jobs only
      if (e.writing) continue;  // a heartbeat or report is being stored; look again next time
      const std::string worker =
          e.rec.job.worker_id().empty() ? std::string("unknown") : e.rec.job.worker_id();
      JobRecord next = e.rec.job.cancel_requested()
                           ? AsFinished(e.rec, qnet::v1::CANCELLED,
                                        absl::StrCat("cancelled by request (worker ", worker,
                                                     " stopped heart-beating before confirming)"))
                           : AsRetriedOrFailed(e.rec, absl::StrCat("lease expired (worker ", worker,
                                                                   " stopped heart-beating)"));
      changes.push_back(BeginChange(e, std::move(next)));
    }
    PruneWorkers(now);
  }
  if (changes.empty()) return 0;
  std::vector<absl::Status> stored;
  stored.reserve(changes.size());
  for (Change& c : changes) stored.push_back(c.saved.Wait());
  int expired = 0;
  absl::MutexLock lock(&mu_);
  for (size_t i = 0; i < changes.size(); ++i) {
    // Read before EndChange, which moves the record into memory (no copy of the job).
    const std::string id = changes[i].next.job.id();
    const qnet::v1::JobState state = changes[i].next.job.state();
    const int attempt = changes[i].next.job.attempt();
    EndChange(changes[i], stored[i]);
    if (!stored[i].ok()) {
      spdlog::error("job {}: lease expired, but that could not be stored ({}); trying again later",
                    id, std::string(stored[i].message()));
      continue;
    }
    ++expired;
    if (metrics_ != nullptr) metrics_->LeaseExpired();
    spdlog::warn("job {}: lease expired; now {} (attempt {})", id, qnet::v1::JobState_Name(state),
                 attempt);
  }
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
  for (auto& [id, watchers] : watchers_) watchers.cv.SignalAll();
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
  for (const auto& [id, watchers] : watchers_) stats.watchers += watchers.waiting;
  stats.watch_wakeups = watch_wakeups_;
  for (const auto& [id, w] : workers_) {
    (w.leases > 0 ? stats.workers_busy : stats.workers_idle)++;
  }
  return stats;
}

}  // namespace qnet::server
