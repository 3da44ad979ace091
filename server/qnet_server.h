// QnetServer: one whole qnetd in a process: it opens DATA_DIR (locked against a second qnetd),
// the blob store, the dataset registry (importing dataset files as blobs), the job store (by URI,
// job_store_registry.h; SQLite in DATA_DIR by default) and the scheduler (recovering queued and
// running jobs), then serves gRPC (JobService, BlobService, WorkerService, health, reflection;
// metrics interceptor) and HTTP (WebApi), expires leases in the background and supervises local
// workers. qnetd's main() is flag parsing around this class; tests and the load generator run it
// in-process.
//
// Shutdown drains: health and /healthz turn NOT_SERVING, new submits and lease requests get
// UNAVAILABLE, local workers are stopped (while heartbeats and Complete/FailLease still work),
// running calls get `grace` to finish, then the job store is closed cleanly.
//
//   QnetServerOptions options;
//   options.listen = "127.0.0.1:0";
//   options.http_listen = "127.0.0.1:0";
//   options.data_dir = "/var/lib/qnet";
//   absl::StatusOr<std::unique_ptr<QnetServer>> server = QnetServer::Start(options);
//   std::cout << (*server)->grpc_address();  // "127.0.0.1:43117"
//   (*server)->Shutdown(absl::Seconds(10));
//
// This header is the whole public interface; the implementation (server/app/qnet_server_impl.h)
// and the components under server/ stay out of its includes. Tests that need the scheduler or
// the store start a QnetServerImpl instead.
#ifndef QNET_SERVER_QNET_SERVER_H_
#define QNET_SERVER_QNET_SERVER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/job/job_limits.h"

namespace qnet::server {

class Clock;
class JobStore;

struct QnetServerOptions {
  std::string listen = "127.0.0.1:50051";      // gRPC, HOST:PORT (port 0 = any free port)
  std::string http_listen = "127.0.0.1:8080";  // "" = no HTTP server
  std::string data_dir;
  int local_workers = 0;
  int lease_seconds = 30;
  int max_attempts = 3;
  int64_t max_queued = 200000;
  int64_t max_blob_bytes = int64_t{1} << 30;
  int max_wait_seconds = 60;          // cap on AcquireLease long-polls
  std::vector<std::string> datasets;  // "NAME=FORMAT:PATH"
  // Registered as "fashion-mnist" (idx) when the folder exists; "" = no default dataset.
  std::string default_dataset_dir = "/usr/share/datasets/fashion-mnist";
  std::string worker_binary;  // "" = look next to qnetd
  // Authentication (docs/ARCHITECTURE.md, "Security"). A tokens file: every call but health
  // checks needs an identity from it, local workers get generated ones. None: every caller is
  // admin, which qnetd allows on loopback addresses only, unless insecure_no_auth says so.
  std::string auth_tokens_path;
  bool insecure_no_auth = false;
  // TLS for gRPC and HTTP (HTTPS): certificate chain and key (PEM). With a client CA, gRPC
  // clients must present a certificate it signed (HTTP clients may); its CN names an identity
  // of the tokens file.
  std::string tls_cert_path;
  std::string tls_key_path;
  std::string tls_client_ca_path;
  // One JSON line per state-changing call appended here (server/auth/audit_log.h); "" = none.
  std::string audit_log_path;
  std::string chartjs_path = "/usr/share/javascript/chart.js/chart.min.js";
  // HTTP limits (docs/ARCHITECTURE.md, "HTTP"). Host names the Host header may name besides IP
  // literals ("*" = any); empty = localhost and the --http-listen host.
  std::vector<std::string> http_allowed_hosts;
  // Capped at a quarter of the descriptor limit, so HTTP clients cannot starve gRPC.
  int http_max_connections = 256;
  int http_max_connections_per_client = 32;
  // gRPC limits (docs/ARCHITECTURE.md, "Resource limits").
  int grpc_max_threads = 512;  // threads serving calls (long-polls hold one each)
  int grpc_max_streams_per_connection = 64;
  int grpc_keepalive_seconds = 60;  // ping idle transports; 20 s without an answer drops them
  int grpc_max_connection_idle_seconds = 600;
  int grpc_max_connection_age_seconds = 3600;  // then GOAWAY; calls in flight still finish
  int upload_idle_seconds = 60;                // an upload sending nothing this long is cancelled
  // What one job may ask for (priority, epochs, batch size, samples); flags --max-job-*.
  job::JobLimits job_limits = job::kServiceJobLimits;
  // Quotas per identity (docs/ARCHITECTURE.md, "Quotas and retention"); 0 = unlimited. Admins
  // (and so everyone without authentication) have none.
  int64_t quota_queued_jobs = 1000;
  int64_t quota_running_jobs = 0;  // beyond it an identity's jobs wait in the queue
  int64_t quota_upload_bytes = int64_t{50} << 30;
  double quota_submits_per_minute = 120;
  // Retention: finished jobs are deleted this long after they end (0 = kept for ever); uploads
  // no job or dataset uses are removed after the grace period.
  int retention_days = 30;
  int upload_grace_hours = 24;
  // Where jobs are stored, as OpenJobStore takes it; "" = DefaultJobStoreUri(data_dir).
  std::string store_uri;
  // Tests: this store instead of store_uri (not owned; it must outlive the server, which closes
  // it on Shutdown).
  JobStore* store = nullptr;
  const Clock* clock = nullptr;  // nullptr = the system clock
};

class QnetServer {
 public:
  // A serving qnetd, or why it could not start (nothing is left running then).
  static absl::StatusOr<std::unique_ptr<QnetServer>> Start(const QnetServerOptions& options);
  virtual ~QnetServer() = default;  // the implementation shuts down with the default grace

  // "HOST:PORT" as listened on, with the real port.
  virtual const std::string& grpc_address() const = 0;
  // "" without an HTTP server.
  virtual std::string http_address() const = 0;
  virtual bool serving() const = 0;

  virtual void Shutdown(absl::Duration grace = absl::Seconds(10)) = 0;
  // Reads the tokens file again (SIGHUP); on an error the identities stay as they were.
  virtual absl::Status ReloadAuthTokens() = 0;
};

// The version qnetd reports (qnet_build_info, dashboard).
const char* QnetVersion();

}  // namespace qnet::server

#endif  // QNET_SERVER_QNET_SERVER_H_
