// Scheduler: the live state of every unfinished job: the priority queue (higher priority first,
// FIFO within a priority), the lease table (who runs what, until when), cancellation, retries and
// the watch notifications. It keeps QUEUED and RUNNING jobs (and a bounded cache of recently
// finished ones) in memory so GetJob and AcquireLease cost the same with 100,000 queued jobs as
// with ten, and writes every change through the JobStore.
//
// Durability: every change (submit, lease, heartbeat, completion, failure, retry, cancel, lease
// expiry) is written to the store first and reaches memory, and so any reader, only once it is
// durable. A write the store refuses leaves memory as it was and the call fails UNAVAILABLE (or
// INTERNAL) saying nothing changed; an expiry that could not be stored is tried again on the next
// ExpireLeases. Changes of one job are written one at a time (a second waits for the first);
// changes of different jobs are written concurrently and share the store's group commit.
//
// Leases: AcquireLease hands out a random token valid for `lease_duration`; each heartbeat
// extends it. A lease that runs out re-queues the job with attempt+1 (keeping checkpoint_digest,
// so the next attempt resumes), or fails it once `max_attempts` attempts have run, or cancels it
// when a cancel was requested. On restart, RUNNING jobs keep their stored lease: a worker that is
// still alive heart-beats on as if nothing happened; otherwise the lease runs out at its stored
// expiry and the job is re-queued then.
//
// Quotas (docs/ARCHITECTURE.md, "Quotas and retention"): per owner, a cap on queued jobs and a
// submit rate refuse submits with RESOURCE_EXHAUSTED; a cap on running jobs keeps the owner's
// further jobs queued (Acquire passes over them) until one ends. The counts are rebuilt from the
// store by Recover, so they hold across restarts. Owners for whom `exempt` says so (admins) have
// none.
//
// Time: leases, timestamps and the submit rate use the injected Clock; long-poll waits use real
// time.
//
//   Scheduler scheduler(store, &clock, {.lease_duration = absl::Seconds(30)}, &metrics);
//   if (absl::Status s = scheduler.Recover(); !s.ok()) return s;
//   absl::StatusOr<qnet::v1::Job> job = scheduler.Submit(spec, "req-1");
//   auto lease = scheduler.Acquire("worker-a", "cpu", absl::Seconds(20));
//   if (lease.ok() && lease->has_value()) {
//     scheduler.Heartbeat((*lease)->job.id(), (*lease)->token, &progress, checkpoint_digest);
//     scheduler.Complete((*lease)->job.id(), (*lease)->token, metrics, artifacts);
//   }
#ifndef QNET_SERVER_SCHEDULING_SCHEDULER_H_
#define QNET_SERVER_SCHEDULING_SCHEDULER_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/container/node_hash_map.h"
#include "absl/random/random.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "qnet/v1/job.pb.h"
#include "server/metrics/metrics_registry.h"
#include "server/scheduling/clock.h"
#include "server/scheduling/token_buckets.h"
#include "server/store/job_store.h"

namespace qnet::server {

// Per-owner limits; 0 = unlimited.
struct OwnerQuotas {
  int64_t queued_jobs = 0;
  int64_t running_jobs = 0;
  double submits_per_minute = 0;
  // Owners no quota applies to; unset = none.
  std::function<bool(absl::string_view owner)> exempt;
};

struct SchedulerOptions {
  absl::Duration lease_duration = absl::Seconds(30);
  int max_attempts = 3;
  int64_t max_queued = 200000;
  absl::Duration max_wait = absl::Seconds(60);  // cap on AcquireLease long-polls
  size_t finished_cache_size = 10000;           // recently finished jobs kept in memory
  OwnerQuotas quotas = {};
};

struct Lease {
  qnet::v1::Job job;
  std::string token;
  absl::Time expire_time;
};

struct HeartbeatReply {
  bool cancel_requested = false;
  absl::Time expire_time;
};

// A job as of some change; versions grow with every change of any job.
struct JobSnapshot {
  qnet::v1::Job job;
  uint64_t version = 0;
};

struct JobList {
  std::vector<qnet::v1::Job> jobs;
  int64_t next_before_seq = 0;  // 0 = no more
};

struct SchedulerStats {
  std::map<qnet::v1::JobState, int64_t> jobs;  // by state, finished ones included
  int64_t queued = 0;
  int workers_busy = 0;
  int workers_idle = 0;
  int watchers = 0;           // WaitForChange calls waiting now
  int64_t watch_wakeups = 0;  // times a waiting WaitForChange was woken, since start
};

class Scheduler {
 public:
  // A List page holds at most this many bytes of jobs (or one job, whatever its size), so a
  // ListJobs response stays far below the gRPC message limit however big its jobs are.
  static constexpr size_t kMaxPageBytes = 4 << 20;

  // `store`, `clock` and `metrics` (may be null) must outlive the scheduler.
  Scheduler(JobStore* store, const Clock* clock, SchedulerOptions options,
            MetricsRegistry* metrics = nullptr);
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Loads QUEUED and RUNNING jobs from the store (call once, before anything else).
  absl::Status Recover();

  // `spec` must already be valid (JobValidator). A repeated non-empty request_id returns the job
  // it created first (whoever owns it). RESOURCE_EXHAUSTED when the queue is full or `owner` (the
  // submitting identity) is at a quota; the message names the limit, its flag and the use.
  absl::StatusOr<qnet::v1::Job> Submit(const qnet::v1::JobSpec& spec, const std::string& request_id,
                                       const std::string& owner = "");
  absl::StatusOr<qnet::v1::Job> Get(absl::string_view id);
  // Newest first, seq < before_seq (0 = newest); `state` UNSPECIFIED = all; `owner` "" = anyone's.
  // At most `limit` jobs and kMaxPageBytes; next_before_seq continues where the page stopped.
  absl::StatusOr<JobList> List(qnet::v1::JobState state, int64_t before_seq, int limit,
                               absl::string_view owner = "");
  // QUEUED jobs end CANCELLED now; RUNNING ones get cancel_requested (the worker stops and reports
  // it); finished ones are FAILED_PRECONDITION.
  absl::StatusOr<qnet::v1::Job> Cancel(absl::string_view id);
  // Removes a finished job from the store, then from memory, and returns it as it was (its
  // artifacts are the blob collector's to remove). FAILED_PRECONDITION for a QUEUED or RUNNING
  // job (cancel it first), NOT_FOUND for an unknown one.
  absl::StatusOr<qnet::v1::Job> Delete(absl::string_view id);
  // Returns the job as soon as its version differs from `seen_version` (0: at once), it is
  // finished, or `deadline` (real time) passes; NOT_FOUND for unknown ids, UNAVAILABLE on
  // shutdown.
  absl::StatusOr<JobSnapshot> WaitForChange(absl::string_view id, uint64_t seen_version,
                                            absl::Time deadline);

  // Long-poll for work: waits up to `wait` (capped) for a queued job. nullopt when none came or
  // `cancelled()` turned true. The lease is bound to `holder`, the worker's identity
  // (Job.lease_holder).
  absl::StatusOr<std::optional<Lease>> Acquire(const std::string& worker_id,
                                               const std::string& device, absl::Duration wait,
                                               const std::function<bool()>& cancelled = {},
                                               const std::string& holder = "");
  // The jobs whose current lease `holder` holds.
  std::vector<qnet::v1::Job> LeasedBy(absl::string_view holder);
  // OK when `token` is job `job_id`'s current lease; FAILED_PRECONDITION saying why not, as the
  // lease calls below answer. Changes no job.
  absl::Status CheckLease(absl::string_view job_id, absl::string_view token);
  // The lease calls: FAILED_PRECONDITION when the token is not the job's current lease.
  // Heartbeat: `progress` nullptr keeps the last one; "" checkpoint_digest keeps the last one (a
  // new one is recorded with the job's attempt).
  absl::StatusOr<HeartbeatReply> Heartbeat(absl::string_view job_id, absl::string_view token,
                                           const qnet::v1::Progress* progress,
                                           const std::string& checkpoint_digest);
  absl::Status Complete(absl::string_view job_id, absl::string_view token,
                        const qnet::v1::Metrics& metrics,
                        const google::protobuf::RepeatedPtrField<qnet::v1::Artifact>& artifacts);
  // cancelled: the worker stopped on request (CANCELLED); retryable: re-queue (attempt+1, up to the
  // limit); otherwise FAILED now.
  absl::Status Fail(absl::string_view job_id, absl::string_view token, const std::string& error,
                    bool retryable, bool cancelled);

  // Ends every lease whose time is up (Acquire does too); returns how many ended durably. Call
  // periodically.
  int ExpireLeases();
  // Wakes every waiter; later Submit/Acquire/Watch calls fail UNAVAILABLE.
  void Shutdown();
  SchedulerStats Stats();
  const SchedulerOptions& options() const { return options_; }

 private:
  struct Entry {
    JobRecord rec;  // as stored
    uint64_t version = 0;
    absl::Time queued_since;
    bool writing = false;  // a change of this job is on its way to the store
  };
  // A change of one job on its way to the store.
  struct Change {
    std::string id;
    JobRecord next;  // the record once stored
    StoreWrite saved;
  };
  struct QueueKey {
    int32_t priority;
    int64_t seq;
    bool operator<(const QueueKey& o) const {
      return priority != o.priority ? priority > o.priority : seq < o.seq;
    }
  };
  struct Finished {
    qnet::v1::Job job;
    uint64_t version = 0;
  };
  struct Worker {
    absl::Time last_seen;
    int leases = 0;
  };
  // An owner's unfinished jobs (submits on their way to the store count as queued).
  struct OwnerLoad {
    int64_t queued = 0;
    int64_t running = 0;
  };

  static QueueKey KeyOf(const Entry& e) { return {e.rec.job.spec().priority(), e.rec.seq}; }
  void Touch(Entry& e) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // The record of a job that ends now in `state` (its lease ends with it).
  JobRecord AsFinished(JobRecord rec, qnet::v1::JobState state, std::string error) const;
  // The record re-queued for attempt+1, or FAILED once max_attempts have run.
  JobRecord AsRetriedOrFailed(JobRecord rec, absl::string_view reason) const;
  // Marks `e` as being written and queues `next` in the store; a QUEUED job leaves the queue
  // meanwhile, so no one else takes it.
  Change BeginChange(Entry& e, JobRecord next) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Once the write resolved: applies the change to memory when `stored` is OK, otherwise puts a
  // QUEUED job (the record is unchanged until applied) back on the queue, leaving memory as it
  // was.
  void EndChange(Change& c, const absl::Status& stored) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Waits for the write (without the lock), then EndChange. `what` names the change for errors:
  // "the lease", "the completion", ...
  absl::Status AwaitChange(Change& c, absl::string_view what) ABSL_LOCKS_EXCLUDED(mu_);
  // Memory follows a stored change: queue, lease table, workers, counts, finished cache, watches.
  void Apply(Entry& e, JobRecord next) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void MoveToFinished(Entry& e) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Waits until no change of job `id` is being written, so the next one starts from the stored
  // state.
  void AwaitNoWrite(absl::string_view id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void PruneWorkers(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SeeWorker(const std::string& worker_id, int lease_delta) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<Entry*> FindLease(absl::string_view job_id, absl::string_view token)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::optional<qnet::v1::Job> FindInMemory(absl::string_view id) ABSL_SHARED_LOCKS_REQUIRED(mu_);
  std::string NewId() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Adds `delta` to the load of `job`'s owner in `job`'s state (QUEUED or RUNNING).
  void CountLoad(const qnet::v1::Job& job, int delta) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool Exempt(absl::string_view owner) const;
  // RESOURCE_EXHAUSTED when `owner` may not submit now (queued-jobs cap, then submit rate).
  absl::Status CheckSubmitQuota(const std::string& owner) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The first queued job whose owner is below the running-jobs cap; nullptr when none.
  Entry* NextLeasable() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  JobStore* const store_;
  const Clock* const clock_;
  const SchedulerOptions options_;
  MetricsRegistry* const metrics_;

  absl::Mutex mu_;
  absl::CondVar work_cv_;    // a job was queued, or shutdown
  absl::CondVar submit_cv_;  // a pending submit finished
  absl::CondVar write_cv_;   // a change was written (or refused)
  bool shutdown_ ABSL_GUARDED_BY(mu_) = false;
  int64_t next_seq_ ABSL_GUARDED_BY(mu_) = 1;
  uint64_t next_version_ ABSL_GUARDED_BY(mu_) = 1;
  // The WaitForChange calls waiting on one job, on a condition variable of its own: a change
  // wakes only that job's watchers, not every stream of the server (node map: stable addresses
  // while others come and go).
  struct Watchers {
    absl::CondVar cv;
    int waiting = 0;
  };
  absl::node_hash_map<std::string, Watchers> watchers_ ABSL_GUARDED_BY(mu_);
  int64_t watch_wakeups_ ABSL_GUARDED_BY(mu_) = 0;
  absl::node_hash_map<std::string, Entry> active_ ABSL_GUARDED_BY(mu_);
  std::map<QueueKey, Entry*> queue_ ABSL_GUARDED_BY(mu_);
  std::set<std::pair<absl::Time, std::string>> lease_expiry_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, Finished> finished_ ABSL_GUARDED_BY(mu_);
  std::deque<std::string> finished_order_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, std::string> request_ids_ ABSL_GUARDED_BY(mu_);  // -> job id
  absl::flat_hash_set<std::string> pending_requests_ ABSL_GUARDED_BY(mu_);
  int64_t pending_submits_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<qnet::v1::JobState, int64_t> counts_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, Worker> workers_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, OwnerLoad> load_ ABSL_GUARDED_BY(mu_);
  std::optional<TokenBuckets> submit_rate_;  // set when quotas.submits_per_minute > 0
  absl::BitGen rng_ ABSL_GUARDED_BY(mu_);
};

}  // namespace qnet::server

#endif  // QNET_SERVER_SCHEDULING_SCHEDULER_H_
