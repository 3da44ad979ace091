// JobStore: the durable record of every job. The scheduler keeps the live view in memory and
// writes each change through a JobStore; on startup it rebuilds its queue from the store.
// SqliteJobStore (sqlite_job_store.h) is the implementation qnetd uses; OpenJobStore
// (job_store_registry.h) opens one by URI. Every implementation must pass the conformance suite
// in tests/server/store/job_store_conformance.h.
//
//   StoreWrite done = store.Create(record);              // queued, applied in call order
//   if (absl::Status s = done.Wait(); !s.ok()) { ... }  // resolved once durable
//   absl::StatusOr<std::optional<JobRecord>> r = store.Get("j-1f2e...");
#ifndef QNET_SERVER_STORE_JOB_STORE_H_
#define QNET_SERVER_STORE_JOB_STORE_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/handoff.h"
#include "qnet/v1/job.pb.h"

namespace qnet::server {

// One stored job: the public Job message plus what only the server needs.
struct JobRecord {
  qnet::v1::Job job;
  int64_t seq = 0;                              // submission order, unique, > 0
  std::string lease_token;                      // the current lease (RUNNING jobs only)
  absl::Time lease_expire = absl::UnixEpoch();  // when that lease runs out (kept to the ms)
};

// One page of ListJobs, newest first.
struct JobPage {
  std::vector<JobRecord> records;
  int64_t next_before_seq = 0;  // pass as before_seq for the next page; 0 = no more
};

// The outcome of one queued write. Wait() blocks until the write is durable (OK) or has failed,
// at most once per StoreWrite; dropping a StoreWrite is fine. Not a std::future: a get() that
// blocks waits inside libstdc++, where ThreadSanitizer cannot see the store's thread wake it.
class StoreWrite {
 public:
  // The store's side of a write: Set once, from any thread.
  using Outcome = std::shared_ptr<Handoff<absl::Status>>;

  // A write whose outcome the store sets later through *outcome.
  static StoreWrite Pending(Outcome* outcome) {
    *outcome = std::make_shared<Handoff<absl::Status>>();
    return StoreWrite(*outcome);
  }
  // A write settled before it was queued (refused, or the store closed).
  static StoreWrite Done(absl::Status status) {
    Outcome outcome;
    StoreWrite write = Pending(&outcome);
    outcome->Set(std::move(status));
    return write;
  }

  // No write (a placeholder to assign a real one to): Wait() returns an internal error.
  StoreWrite() = default;

  absl::Status Wait() {
    if (outcome_ == nullptr) return absl::InternalError("job store: no write was queued");
    return outcome_->Wait();
  }

 private:
  explicit StoreWrite(Outcome outcome) : outcome_(std::move(outcome)) {}
  Outcome outcome_;
};

class JobStore {
 public:
  virtual ~JobStore() = default;

  // Queues the insert of a new job and returns at once; fails (never overwrites) if the id, seq or
  // request_id is taken. Writes are applied in the order of the calls (Create and Save alike); the
  // StoreWrite resolves when this write is durable (OK) or has failed.
  virtual StoreWrite Create(const JobRecord& record) = 0;
  // Queues an update of an existing job's whole record, as Create does. NOT_FOUND when no job has
  // this id with this seq and request_id (those never change).
  virtual StoreWrite Save(const JobRecord& record) = 0;
  // Queues the removal of job `id`, ordered with the other writes; NOT_FOUND when there is none.
  // Its id, seq and request_id are free again once its StoreWrite resolves OK.
  virtual StoreWrite Delete(absl::string_view id) = 0;

  // Reads see every write whose StoreWrite has resolved OK.
  virtual absl::StatusOr<std::optional<JobRecord>> Get(absl::string_view id) = 0;
  virtual absl::StatusOr<std::optional<JobRecord>> FindByRequestId(
      absl::string_view request_id) = 0;
  // Jobs with seq < before_seq (0 = from the newest), newest first, in `state` (UNSPECIFIED = all).
  virtual absl::StatusOr<JobPage> List(qnet::v1::JobState state, int64_t before_seq, int limit) = 0;
  // Calls `fn` for every QUEUED or RUNNING job in seq order (startup recovery).
  virtual absl::Status ForEachActive(const std::function<void(JobRecord)>& fn) = 0;
  virtual absl::StatusOr<std::map<qnet::v1::JobState, int64_t>> CountByState() = 0;
  virtual absl::StatusOr<int64_t> MaxSeq() = 0;
  // Bytes the store takes on disk (the /metrics gauge qnet_disk_bytes).
  virtual absl::StatusOr<int64_t> DiskBytes() = 0;

  // Makes every write queued so far durable, then refuses writes and reads (UNAVAILABLE).
  // Idempotent; the destructor does it too.
  virtual void Close() = 0;
  // Durable commits so far: a store that groups writes counts one per group (for tests and the
  // load generator).
  virtual int64_t commits() const = 0;
};

}  // namespace qnet::server

#endif  // QNET_SERVER_STORE_JOB_STORE_H_
