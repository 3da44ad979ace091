#include "server/store/sqlite_job_store.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/unknown_field_set.h>
#include <sqlite3.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/registry.h"
#include "common/utf8.h"
#include "server/store/job_store_registry.h"
#include "spdlog/spdlog.h"

namespace qnet::server {
namespace {

using qnet::v1::JobState;

constexpr size_t kMaxBatch = 4096;
// Job writes between checkpoints (a job row is about one WAL page).
constexpr int64_t kCheckpointPages = 2000;

constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS jobs (
  id TEXT PRIMARY KEY NOT NULL,
  seq INTEGER NOT NULL UNIQUE,
  state INTEGER NOT NULL,
  priority INTEGER NOT NULL,
  request_id TEXT UNIQUE,
  lease_token TEXT,
  lease_expire_ms INTEGER NOT NULL DEFAULT 0,
  job BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs(state, seq);
PRAGMA user_version = 1;
)sql";

constexpr const char* kColumns =
    "id, seq, state, priority, request_id, lease_token, "
    "lease_expire_ms, job";

// SQLite's message; a failed disk access says where to look, as SQLite's "disk I/O error" does
// not say why (a full disk, a file size limit, a failing device).
std::string Reason(sqlite3* db, absl::string_view message) {
  const int code = sqlite3_extended_errcode(db) & 0xff;
  if (code != SQLITE_IOERR && code != SQLITE_FULL) return std::string(message);
  return absl::StrCat(message, "; the data folder's disk may be full or failing");
}

absl::Status SqliteError(sqlite3* db, absl::string_view what) {
  return absl::UnavailableError(absl::StrCat(
      "job store: ", what, ": ", db != nullptr ? Reason(db, sqlite3_errmsg(db)) : "out of memory"));
}

absl::Status Exec(sqlite3* db, const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    absl::Status s = absl::UnavailableError(absl::StrCat(
        "job store: ", absl::StripAsciiWhitespace(absl::string_view(sql).substr(0, 32)), ": ",
        Reason(db, err != nullptr ? err : "unknown error")));
    sqlite3_free(err);
    return s;
  }
  return absl::OkStatus();
}

// A prepared statement that finalizes itself.
class Stmt {
 public:
  Stmt(sqlite3* db, const std::string& sql) {
    if (sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt_, nullptr) != SQLITE_OK) stmt_ = nullptr;
  }
  // Borrows a statement prepared once (kept by the store); reset, not finalized, at scope end.
  explicit Stmt(sqlite3_stmt* borrowed) : stmt_(borrowed), owned_(false) {}
  ~Stmt() {
    if (owned_) {
      sqlite3_finalize(stmt_);
    } else {
      Reset();
    }
  }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;

  bool ok() const { return stmt_ != nullptr; }
  sqlite3_stmt* get() const { return stmt_; }
  void BindText(int i, absl::string_view v) {
    sqlite3_bind_text(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
  }
  void BindTextOrNull(int i, absl::string_view v) {
    if (v.empty()) {
      sqlite3_bind_null(stmt_, i);
    } else {
      BindText(i, v);
    }
  }
  void BindInt(int i, int64_t v) { sqlite3_bind_int64(stmt_, i, v); }
  void BindBlob(int i, absl::string_view v) {
    sqlite3_bind_blob(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
  }
  int Step() { return sqlite3_step(stmt_); }
  void Reset() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }
  absl::string_view Text(int col) const {
    const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, col));
    return p == nullptr ? absl::string_view()
                        : absl::string_view(p, sqlite3_column_bytes(stmt_, col));
  }
  absl::string_view Blob(int col) const {
    const auto* p = static_cast<const char*>(sqlite3_column_blob(stmt_, col));
    return p == nullptr ? absl::string_view()
                        : absl::string_view(p, sqlite3_column_bytes(stmt_, col));
  }
  int64_t Int(int col) const { return sqlite3_column_int64(stmt_, col); }

 private:
  sqlite3_stmt* stmt_ = nullptr;
  bool owned_ = true;
};

// `bytes`, a serialized `type`, with the invalid UTF-8 of every string field at any depth
// replaced by U+FFFD; false when they are not protobuf wire format.
bool RepairUtf8(const google::protobuf::Descriptor& type, std::string* bytes) {
  google::protobuf::UnknownFieldSet fields;
  if (!fields.ParseFromString(*bytes)) return false;
  for (int i = 0; i < fields.field_count(); ++i) {
    google::protobuf::UnknownField& field = *fields.mutable_field(i);
    const google::protobuf::FieldDescriptor* known = type.FindFieldByNumber(field.number());
    if (field.type() != google::protobuf::UnknownField::TYPE_LENGTH_DELIMITED || known == nullptr) {
      continue;
    }
    if (known->type() == google::protobuf::FieldDescriptor::TYPE_STRING) {
      *field.mutable_length_delimited() = ValidUtf8(field.length_delimited());
    } else if (known->type() == google::protobuf::FieldDescriptor::TYPE_MESSAGE &&
               !RepairUtf8(*known->message_type(), field.mutable_length_delimited())) {
      return false;
    }
  }
  bytes->clear();
  return fields.SerializeToString(bytes);
}

// Reads a row selected with kColumns. Strings that are not UTF-8 (older versions stored errors cut
// inside a character) are repaired; a row that does not parse even so is reported, not trusted.
absl::StatusOr<JobRecord> ReadRow(const Stmt& stmt) {
  JobRecord r;
  absl::string_view bytes = stmt.Blob(7);
  if (!r.job.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    std::string repaired(bytes);
    if (!RepairUtf8(*qnet::v1::Job::descriptor(), &repaired) || !r.job.ParseFromString(repaired)) {
      return absl::DataLossError(
          absl::StrCat("job store: stored job ", stmt.Text(0), " does not parse as qnet.v1.Job"));
    }
  }
  r.seq = stmt.Int(1);
  r.lease_token = std::string(stmt.Text(5));
  r.lease_expire = absl::FromUnixMillis(stmt.Int(6));
  return r;
}

absl::StatusOr<sqlite3*> OpenConnection(const std::string& path) {
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(
      path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    absl::Status s =
        absl::UnavailableError(absl::StrCat("cannot open job store ", path, ": ",
                                            db != nullptr ? sqlite3_errmsg(db) : "out of memory"));
    sqlite3_close(db);
    return s;
  }
  sqlite3_busy_timeout(db, 10000);
  return db;
}

}  // namespace

absl::StatusOr<std::unique_ptr<SqliteJobStore>> SqliteJobStore::Open(const std::string& path) {
  absl::StatusOr<sqlite3*> writer = OpenConnection(path);
  if (!writer.ok()) return writer.status();
  // WAL: readers never block the committer. synchronous=FULL: a commit is on disk when it returns.
  for (const char* sql : {"PRAGMA journal_mode=WAL", "PRAGMA synchronous=FULL", kSchema}) {
    if (absl::Status s = Exec(*writer, sql); !s.ok()) {
      sqlite3_close(*writer);
      return absl::Status(s.code(), absl::StrCat("cannot open job store ", path, " (", s.message(),
                                                 "); is it a qnet job store, and writable?"));
    }
  }
  // Checkpoints run on their own connection and thread, off the commit path.
  sqlite3_wal_autocheckpoint(*writer, 0);
  absl::StatusOr<sqlite3*> reader = OpenConnection(path);
  if (!reader.ok()) {
    sqlite3_close(*writer);
    return reader.status();
  }
  absl::StatusOr<sqlite3*> checkpointer = OpenConnection(path);
  if (!checkpointer.ok()) {
    sqlite3_close(*writer);
    sqlite3_close(*reader);
    return checkpointer.status();
  }
  return std::unique_ptr<SqliteJobStore>(new SqliteJobStore(path, *writer, *reader, *checkpointer));
}

absl::StatusOr<std::unique_ptr<JobStore>> SqliteJobStore::OpenUri(absl::string_view location) {
  // Relative paths are refused: "sqlite://jobs.db" reads as a host name in URI terms, and a path
  // that depends on the working folder is how a restarted server loses its jobs.
  if (!absl::StartsWith(location, "/")) {
    return absl::InvalidArgumentError(
        absl::StrCat("job store URI sqlite://", location,
                     ": the path must be absolute, as in sqlite:///var/lib/qnet/jobs.db"));
  }
  absl::StatusOr<std::unique_ptr<SqliteJobStore>> store = Open(std::string(location));
  if (!store.ok()) return store.status();
  return std::unique_ptr<JobStore>(*std::move(store));
}

QNET_REGISTER(JobStoreScheme, "sqlite",
              JobStoreScheme{"sqlite:///var/lib/qnet/jobs.db", &SqliteJobStore::OpenUri});

SqliteJobStore::SqliteJobStore(std::string path, sqlite3* writer, sqlite3* reader,
                               sqlite3* checkpointer)
    : path_(std::move(path)), writer_(writer), reader_(reader), checkpointer_(checkpointer) {
  const std::string select = absl::StrCat("SELECT ", kColumns, " FROM jobs WHERE ");
  sqlite3_prepare_v3(reader_, (select + "id = ?1").c_str(), -1, SQLITE_PREPARE_PERSISTENT,
                     &get_by_id_, nullptr);
  sqlite3_prepare_v3(reader_, (select + "request_id = ?1").c_str(), -1, SQLITE_PREPARE_PERSISTENT,
                     &get_by_request_id_, nullptr);
  committer_ = std::thread([this] { CommitLoop(); });
  checkpoint_thread_ = std::thread([this] { CheckpointLoop(); });
}

void SqliteJobStore::CheckpointLoop() {
  std::unique_lock<std::mutex> lock(queue_mu_);
  while (true) {
    checkpoint_cv_.wait(lock, [this] { return closing_ || wal_pages_ >= kCheckpointPages; });
    if (closing_) return;
    wal_pages_ = 0;
    lock.unlock();
    // PASSIVE: copies what it can without blocking the committer or readers.
    int log_pages = 0, done_pages = 0;
    if (sqlite3_wal_checkpoint_v2(checkpointer_, nullptr, SQLITE_CHECKPOINT_PASSIVE, &log_pages,
                                  &done_pages) != SQLITE_OK) {
      spdlog::warn("job store checkpoint: {}", sqlite3_errmsg(checkpointer_));
    }
    lock.lock();
  }
}

SqliteJobStore::~SqliteJobStore() { Close(); }

void SqliteJobStore::Close() {
  std::lock_guard<std::mutex> close_lock(close_mu_);
  {
    std::lock_guard<std::mutex> lock(queue_mu_);
    closing_ = true;
  }
  queue_cv_.notify_all();
  checkpoint_cv_.notify_all();
  if (committer_.joinable()) committer_.join();
  if (checkpoint_thread_.joinable()) checkpoint_thread_.join();
  std::lock_guard<std::mutex> lock(read_mu_);
  sqlite3_finalize(get_by_id_);
  sqlite3_finalize(get_by_request_id_);
  get_by_id_ = get_by_request_id_ = nullptr;
  if (checkpointer_ != nullptr) {
    sqlite3_close(checkpointer_);
    checkpointer_ = nullptr;
  }
  if (writer_ != nullptr) {
    // Fold the WAL back into the main file so a clean shutdown leaves one file.
    sqlite3_wal_checkpoint_v2(writer_, nullptr, SQLITE_CHECKPOINT_TRUNCATE, nullptr, nullptr);
    sqlite3_close(writer_);
    writer_ = nullptr;
  }
  if (reader_ != nullptr) {
    sqlite3_close(reader_);
    reader_ = nullptr;
  }
}

int64_t SqliteJobStore::commits() const {
  std::lock_guard<std::mutex> lock(queue_mu_);
  return commits_;
}

StoreWrite SqliteJobStore::Create(const JobRecord& record) {
  return EnqueueRecord(record, WriteKind::kCreate);
}

StoreWrite SqliteJobStore::Save(const JobRecord& record) {
  return EnqueueRecord(record, WriteKind::kSave);
}

StoreWrite SqliteJobStore::Delete(absl::string_view id) {
  PendingWrite w;
  w.kind = WriteKind::kDelete;
  w.id = std::string(id);
  return Enqueue(std::move(w));
}

StoreWrite SqliteJobStore::EnqueueRecord(const JobRecord& record, WriteKind kind) {
  PendingWrite w;
  w.kind = kind;
  w.id = record.job.id();
  w.seq = record.seq;
  w.state = static_cast<int>(record.job.state());
  w.priority = record.job.spec().priority();
  w.request_id = record.job.request_id();
  w.lease_token = record.lease_token;
  w.lease_expire_ms = absl::ToUnixMillis(record.lease_expire);
  record.job.SerializeToString(&w.job_bytes);
  return Enqueue(std::move(w));
}

StoreWrite SqliteJobStore::Enqueue(PendingWrite w) {
  StoreWrite result = StoreWrite::Pending(&w.done);
  {
    std::lock_guard<std::mutex> lock(queue_mu_);
    if (closing_) {
      w.done->Set(absl::UnavailableError("job store is closed (server shutting down)"));
      return result;
    }
    queue_.push_back(std::move(w));
  }
  queue_cv_.notify_one();
  return result;
}

void SqliteJobStore::CommitLoop() {
  std::deque<PendingWrite> batch;
  while (true) {
    {
      std::unique_lock<std::mutex> lock(queue_mu_);
      queue_cv_.wait(lock, [this] { return closing_ || !queue_.empty(); });
      if (queue_.empty()) return;  // closing and drained
      if (queue_.size() <= kMaxBatch) {
        batch.swap(queue_);
      } else {
        for (size_t i = 0; i < kMaxBatch; ++i) {
          batch.push_back(std::move(queue_.front()));
          queue_.pop_front();
        }
      }
    }
    CommitBatch(batch);
    batch.clear();
  }
}

void SqliteJobStore::CommitBatch(std::deque<PendingWrite>& batch) {
  std::vector<absl::Status> results(batch.size());
  absl::Status batch_status = Exec(writer_, "BEGIN IMMEDIATE");
  if (batch_status.ok()) {
    Stmt insert(writer_, absl::StrCat("INSERT INTO jobs(", kColumns,
                                      ") VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"));
    Stmt update(writer_,
                "UPDATE jobs SET state = ?3, priority = ?4, lease_token = ?6, "
                "lease_expire_ms = ?7, job = ?8 WHERE id = ?1 AND seq = ?2 AND "
                "request_id IS ?5");
    Stmt remove(writer_, "DELETE FROM jobs WHERE id = ?1");
    if (!insert.ok() || !update.ok() || !remove.ok()) {
      batch_status = SqliteError(writer_, "prepare writes");
    }
    for (size_t i = 0; batch_status.ok() && i < batch.size(); ++i) {
      const PendingWrite& w = batch[i];
      Stmt& stmt = w.kind == WriteKind::kCreate ? insert
                   : w.kind == WriteKind::kSave ? update
                                                : remove;
      stmt.BindText(1, w.id);
      if (w.kind != WriteKind::kDelete) {
        stmt.BindInt(2, w.seq);
        stmt.BindInt(3, w.state);
        stmt.BindInt(4, w.priority);
        stmt.BindTextOrNull(5, w.request_id);
        stmt.BindTextOrNull(6, w.lease_token);
        stmt.BindInt(7, w.lease_expire_ms);
        stmt.BindBlob(8, w.job_bytes);
      }
      if (stmt.Step() != SQLITE_DONE) {
        // A failed statement (e.g. a UNIQUE clash) undoes only itself, unless SQLite had to roll
        // back the whole transaction (disk full, I/O error): then every write in it failed.
        results[i] = SqliteError(writer_, absl::StrCat("save job ", w.id));
        if (sqlite3_get_autocommit(writer_)) batch_status = results[i];
      } else if (w.kind != WriteKind::kCreate && sqlite3_changes(writer_) != 1) {
        results[i] = absl::NotFoundError(
            absl::StrCat("job store: job ", w.id, " is not stored",
                         w.kind == WriteKind::kSave ? " (or its seq/request_id differ)" : ""));
      }
      stmt.Reset();
    }
  }
  if (batch_status.ok()) {
    batch_status = Exec(writer_, "COMMIT");
    if (!batch_status.ok()) Exec(writer_, "ROLLBACK").IgnoreError();
  } else if (!sqlite3_get_autocommit(writer_)) {
    Exec(writer_, "ROLLBACK").IgnoreError();
  }
  if (!batch_status.ok()) {
    spdlog::error("{} ({} job writes lost)", std::string(batch_status.message()), batch.size());
  } else {
    std::lock_guard<std::mutex> lock(queue_mu_);
    ++commits_;
    wal_pages_ += static_cast<int64_t>(batch.size());
    if (wal_pages_ >= kCheckpointPages) checkpoint_cv_.notify_one();
  }
  for (size_t i = 0; i < batch.size(); ++i) {
    absl::Status s = batch_status.ok() ? results[i] : batch_status;
    if (!s.ok() && batch_status.ok()) spdlog::error("{}", std::string(s.message()));
    batch[i].done->Set(std::move(s));
  }
}

absl::StatusOr<std::optional<JobRecord>> SqliteJobStore::GetWhere(sqlite3_stmt* const* cached,
                                                                  absl::string_view key) {
  std::lock_guard<std::mutex> lock(read_mu_);
  if (reader_ == nullptr) return absl::UnavailableError("job store is closed");
  if (*cached == nullptr) return SqliteError(reader_, "prepare get");
  Stmt stmt(*cached);
  stmt.BindText(1, key);
  int rc = stmt.Step();
  if (rc == SQLITE_DONE) return std::optional<JobRecord>();
  if (rc != SQLITE_ROW) return SqliteError(reader_, "get job");
  absl::StatusOr<JobRecord> r = ReadRow(stmt);
  if (!r.ok()) return r.status();
  return std::optional<JobRecord>(*std::move(r));
}

absl::StatusOr<std::optional<JobRecord>> SqliteJobStore::Get(absl::string_view id) {
  return GetWhere(&get_by_id_, id);
}

absl::StatusOr<std::optional<JobRecord>> SqliteJobStore::FindByRequestId(
    absl::string_view request_id) {
  if (request_id.empty()) return std::optional<JobRecord>();
  return GetWhere(&get_by_request_id_, request_id);
}

absl::StatusOr<JobPage> SqliteJobStore::List(JobState state, int64_t before_seq, int limit) {
  std::lock_guard<std::mutex> lock(read_mu_);
  if (reader_ == nullptr) return absl::UnavailableError("job store is closed");
  if (before_seq <= 0) before_seq = INT64_MAX;
  const bool filter = state != qnet::v1::JOB_STATE_UNSPECIFIED;
  Stmt stmt(reader_, absl::StrCat("SELECT ", kColumns, " FROM jobs WHERE seq < ?1",
                                  filter ? " AND state = ?3" : "", " ORDER BY seq DESC LIMIT ?2"));
  if (!stmt.ok()) return SqliteError(reader_, "prepare list");
  stmt.BindInt(1, before_seq);
  stmt.BindInt(2, static_cast<int64_t>(limit) + 1);  // one more tells whether a next page exists
  if (filter) stmt.BindInt(3, static_cast<int>(state));
  JobPage page;
  int rows = 0;
  int rc;
  int64_t last_seq = 0;
  while ((rc = stmt.Step()) == SQLITE_ROW) {
    if (++rows > limit) {
      page.next_before_seq = last_seq;
      break;
    }
    last_seq = stmt.Int(1);
    absl::StatusOr<JobRecord> r = ReadRow(stmt);
    if (!r.ok()) {
      spdlog::error("{}; skipped", std::string(r.status().message()));
      continue;
    }
    page.records.push_back(*std::move(r));
  }
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) return SqliteError(reader_, "list jobs");
  return page;
}

absl::Status SqliteJobStore::ForEachActive(const std::function<void(JobRecord)>& fn) {
  std::lock_guard<std::mutex> lock(read_mu_);
  if (reader_ == nullptr) return absl::UnavailableError("job store is closed");
  Stmt stmt(reader_, absl::StrCat("SELECT ", kColumns, " FROM jobs WHERE state IN (",
                                  static_cast<int>(qnet::v1::QUEUED), ", ",
                                  static_cast<int>(qnet::v1::RUNNING), ") ORDER BY seq"));
  if (!stmt.ok()) return SqliteError(reader_, "prepare load");
  int rc;
  while ((rc = stmt.Step()) == SQLITE_ROW) {
    absl::StatusOr<JobRecord> r = ReadRow(stmt);
    if (!r.ok()) {
      spdlog::error("{}; skipped", std::string(r.status().message()));
      continue;
    }
    fn(*std::move(r));
  }
  if (rc != SQLITE_DONE) return SqliteError(reader_, "load active jobs");
  return absl::OkStatus();
}

absl::StatusOr<std::map<JobState, int64_t>> SqliteJobStore::CountByState() {
  std::lock_guard<std::mutex> lock(read_mu_);
  if (reader_ == nullptr) return absl::UnavailableError("job store is closed");
  Stmt stmt(reader_, "SELECT state, COUNT(*) FROM jobs GROUP BY state");
  if (!stmt.ok()) return SqliteError(reader_, "prepare count");
  std::map<JobState, int64_t> counts;
  int rc;
  while ((rc = stmt.Step()) == SQLITE_ROW) {
    int state = static_cast<int>(stmt.Int(0));
    if (qnet::v1::JobState_IsValid(state)) counts[static_cast<JobState>(state)] = stmt.Int(1);
  }
  if (rc != SQLITE_DONE) return SqliteError(reader_, "count jobs");
  return counts;
}

absl::StatusOr<int64_t> SqliteJobStore::MaxSeq() {
  std::lock_guard<std::mutex> lock(read_mu_);
  if (reader_ == nullptr) return absl::UnavailableError("job store is closed");
  Stmt stmt(reader_, "SELECT COALESCE(MAX(seq), 0) FROM jobs");
  if (!stmt.ok() || stmt.Step() != SQLITE_ROW) return SqliteError(reader_, "max seq");
  return stmt.Int(0);
}

absl::StatusOr<int64_t> SqliteJobStore::DiskBytes() {
  int64_t bytes = 0;
  for (const char* suffix : {"", "-wal", "-shm"}) {
    struct stat st;
    const std::string file = path_ + suffix;
    if (::stat(file.c_str(), &st) == 0) {
      bytes += st.st_size;
    } else if (errno != ENOENT) {
      return absl::UnavailableError(
          absl::StrCat("job store: stat ", file, ": ", std::strerror(errno)));
    }
  }
  return bytes;
}

}  // namespace qnet::server
