// SqliteJobStore: the JobStore in one SQLite file (WAL). Each job is a row holding the serialized
// qnet.v1.Job plus indexed columns (id, state, priority, seq, request_id UNIQUE, lease). Writes go
// through one committer thread that batches every write queued meanwhile into a single
// transaction (group commit), so many concurrent durable submits share one fsync; a second thread
// checkpoints the WAL into the main file so commits never wait for that.
//
//   absl::StatusOr<std::unique_ptr<SqliteJobStore>> store =
//       SqliteJobStore::Open(data_dir + "/jobs.db");
//   if (!store.ok()) return store.status();
//   (*store)->Create(record).Wait();  // durable once this returns OK
//   (*store)->Close();             // also done by the destructor
#ifndef QNET_SERVER_STORE_SQLITE_JOB_STORE_H_
#define QNET_SERVER_STORE_SQLITE_JOB_STORE_H_

#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "absl/strings/string_view.h"
#include "server/store/job_store.h"

struct sqlite3;
struct sqlite3_stmt;

namespace qnet::server {

class SqliteJobStore final : public JobStore {
 public:
  // Opens or creates the database at `path` (its folder must exist).
  static absl::StatusOr<std::unique_ptr<SqliteJobStore>> Open(const std::string& path);
  // The "sqlite" scheme of OpenJobStore: `location`, what follows "sqlite://", is an absolute path.
  static absl::StatusOr<std::unique_ptr<JobStore>> OpenUri(absl::string_view location);
  ~SqliteJobStore() override;
  SqliteJobStore(const SqliteJobStore&) = delete;
  SqliteJobStore& operator=(const SqliteJobStore&) = delete;

  StoreWrite Create(const JobRecord& record) override;
  StoreWrite Save(const JobRecord& record) override;
  StoreWrite Delete(absl::string_view id) override;
  absl::StatusOr<std::optional<JobRecord>> Get(absl::string_view id) override;
  absl::StatusOr<std::optional<JobRecord>> FindByRequestId(absl::string_view request_id) override;
  absl::StatusOr<JobPage> List(qnet::v1::JobState state, int64_t before_seq, int limit) override;
  absl::Status ForEachActive(const std::function<void(JobRecord)>& fn) override;
  absl::StatusOr<std::map<qnet::v1::JobState, int64_t>> CountByState() override;
  absl::StatusOr<int64_t> MaxSeq() override;
  absl::StatusOr<int64_t> DiskBytes() override;

  // Commits what is queued, stops the committer and closes the database. Later Saves fail with
  // UNAVAILABLE. Idempotent.
  void Close() override;

  // Transactions committed so far (shows group commit at work).
  int64_t commits() const override;

 private:
  enum class WriteKind { kCreate, kSave, kDelete };
  struct PendingWrite {
    WriteKind kind;
    std::string id;
    int64_t seq;
    int state;
    int priority;
    std::string request_id;
    std::string lease_token;
    int64_t lease_expire_ms;
    std::string job_bytes;
    StoreWrite::Outcome done;
  };

  SqliteJobStore(std::string path, sqlite3* writer, sqlite3* reader, sqlite3* checkpointer);
  void CheckpointLoop();
  StoreWrite Enqueue(PendingWrite w);
  StoreWrite EnqueueRecord(const JobRecord& record, WriteKind kind);
  void CommitLoop();
  void CommitBatch(std::deque<PendingWrite>& batch);
  absl::StatusOr<std::optional<JobRecord>> GetWhere(sqlite3_stmt* const* cached,
                                                    absl::string_view key);

  const std::string path_;
  sqlite3* writer_;                            // owned by the committer thread once it runs
  sqlite3* reader_;                            // guarded by read_mu_
  sqlite3_stmt* get_by_id_ = nullptr;          // on reader_, guarded by read_mu_
  sqlite3_stmt* get_by_request_id_ = nullptr;  // on reader_, guarded by read_mu_
  std::mutex read_mu_;
  sqlite3* checkpointer_;  // owned by the checkpoint thread

  mutable std::mutex queue_mu_;
  std::condition_variable queue_cv_;
  std::deque<PendingWrite> queue_;  // guarded by queue_mu_
  bool closing_ = false;            // guarded by queue_mu_
  int64_t commits_ = 0;             // guarded by queue_mu_
  int64_t wal_pages_ = 0;           // written since the last checkpoint; guarded by queue_mu_
  std::condition_variable checkpoint_cv_;
  std::thread checkpoint_thread_;
  std::mutex close_mu_;  // serializes Close()
  std::thread committer_;
};

}  // namespace qnet::server

#endif  // QNET_SERVER_STORE_SQLITE_JOB_STORE_H_
