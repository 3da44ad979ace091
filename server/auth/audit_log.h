// The audit log (qnetd --audit-log FILE): one JSON line per state-changing gRPC call, written by
// one server interceptor (GrpcAuditInterceptorFactory) after the handler has answered, so no
// handler writes it:
//
//   {"time":"2026-12-01T22:10:03.123Z","identity":"alice","role":"client",
//    "method":"/qnet.v1.JobService/CancelJob","job_id":"j-...","code":"OK","message":""}
//
// Which calls change state is a table next to the method table (AuditTable; a test checks that
// it classifies every method there): jobs submitted and cancelled, datasets created, uploads,
// leases completed and failed, a lease acquired (when it hands out a job), and a heartbeat that
// reports a new checkpoint. The log is appended with one write(2) per line, so every line is in
// the file when the call ends and lines of concurrent calls never interleave. Tokens (bearer
// tokens, lease tokens) are never written. A failed write is counted in
// qnet_audit_write_failures_total and logged, and never fails the call.
//
// Calls the auth check refuses before any handler (GrpcAuthProcessor: no or an unknown
// identity, UNAUTHENTICATED; a role the method table does not allow or a method it does not
// list, PERMISSION_DENIED) are logged too, on every method, reads included: a stranger probing
// with guessed tokens is what an operator looks for. So that nobody can fill the disk with
// them, refusals are aggregated per minute: the first refusal of each (identity, method, code)
// in a window gets its own line; repeats are counted and written as one summary line per key
// when the window ends ("repeats": N, message "N more ... since ..."). At most
// kRefusalKeysPerWindow keys get lines of their own in a window; further refusals fold into one
// key per code (identity null, method "*"). So refusals add at most ~2 * (64 + codes) lines a
// minute, whatever the callers do; every refusal is counted in qnet_audit_refusals_total.
//
//   absl::StatusOr<std::unique_ptr<AuditLog>> audit = AuditLog::Open("/var/log/qnet/audit", &m);
//   interceptors.push_back(std::make_unique<GrpcAuditInterceptorFactory>(audit->get(), &auth));
#ifndef QNET_SERVER_AUTH_AUDIT_LOG_H_
#define QNET_SERVER_AUTH_AUDIT_LOG_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <grpcpp/support/server_interceptor.h>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/auth/authenticator.h"
#include "server/auth/identity.h"
#include "server/metrics/metrics_registry.h"

namespace qnet::server {

// When a method is audited.
enum class AuditWhen : uint8_t {
  kNever,          // reads
  kAlways,         // every call, whatever its outcome
  kWhenJob,        // only calls that name a job (AcquireLease: when it hands one out)
  kNewCheckpoint,  // a heartbeat whose checkpoint differs from the last one logged
};

// Every method of the method table (method_table.h) and when it is audited.
const std::vector<std::pair<absl::string_view, AuditWhen>>& AuditTable();
// kNever for a method the table does not list.
AuditWhen AuditWhenOf(absl::string_view method);

struct AuditEntry {
  absl::Time time;
  std::optional<Identity> who;  // nullopt: the caller could not be identified
  std::string method;           // "/qnet.v1.JobService/SubmitJob"
  std::string job_id;           // "" when the call names none
  absl::Status outcome;
  // > 0 on a refusals summary line: how many refusals it stands for.
  int64_t repeats = 0;
};

class AuditLog {
 public:
  static constexpr absl::Duration kRefusalWindow = absl::Minutes(1);
  static constexpr size_t kRefusalKeysPerWindow = 64;

  // Appends to `path` (created with mode 0600). `metrics` (may be null) counts failed writes
  // and refusals.
  static absl::StatusOr<std::unique_ptr<AuditLog>> Open(const std::string& path,
                                                        MetricsRegistry* metrics);
  // Writes the summaries of refusals still pending.
  ~AuditLog();
  AuditLog(const AuditLog&) = delete;
  AuditLog& operator=(const AuditLog&) = delete;

  void Write(const AuditEntry& entry);
  // A call refused before any handler, at `entry.time`: its own line (true), or a repeat counted
  // for the window's summary (false; see above).
  bool Refused(const AuditEntry& entry);
  // Writes the summary lines of a refusal window that has ended by `now` (a thread calls it a
  // few times per window, Refused when the next refusal comes).
  void FlushRefusals(absl::Time now);
  // Whether a heartbeat reporting `checkpoint` for `job_id` is news; remembers it.
  bool NewCheckpoint(const std::string& job_id, const std::string& checkpoint);
  // The job's lease ended: forget its checkpoint.
  void ForgetJob(const std::string& job_id);
  int64_t write_failures() const { return write_failures_.load(); }

 private:
  // The line written for a refusal key, and its repeats since.
  struct RefusalSummary {
    AuditEntry first;
    int64_t repeats = 0;
  };

  AuditLog(int fd, std::string path, prometheus::Counter* failures, prometheus::Counter* refusals);
  // When the window has ended by `now` (or `even_if_open`): writes its summaries and forgets
  // its keys.
  void EndRefusalWindowLocked(absl::Time now, bool even_if_open = false)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(refusals_mu_);
  void FlushRefusalsPeriodically();

  const int fd_;
  const std::string path_;
  prometheus::Counter* const failures_counter_;  // null without metrics
  prometheus::Counter* const refusals_counter_;  // null without metrics
  std::atomic<int64_t> write_failures_{0};
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::string> checkpoints_ ABSL_GUARDED_BY(mu_);
  absl::Mutex refusals_mu_;
  absl::Time refusal_window_start_ ABSL_GUARDED_BY(refusals_mu_);
  // "code identity method" -> its summary, for the current window.
  absl::flat_hash_map<std::string, RefusalSummary> refusals_ ABSL_GUARDED_BY(refusals_mu_);
  bool stopping_ ABSL_GUARDED_BY(refusals_mu_) = false;
  std::thread flusher_;
};

// The one JSON line (with its newline) for `entry`.
std::string AuditLine(const AuditEntry& entry);

class GrpcAuditInterceptorFactory final
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  GrpcAuditInterceptorFactory(AuditLog* log, const Authenticator* auth) : log_(log), auth_(auth) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override;

 private:
  AuditLog* const log_;
  const Authenticator* const auth_;
};

}  // namespace qnet::server

#endif  // QNET_SERVER_AUTH_AUDIT_LOG_H_
