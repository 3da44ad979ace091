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
#ifndef QNET_SERVER_QNET_SERVER_H_
#define QNET_SERVER_QNET_SERVER_H_

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/server.h>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/blob_service.h"
#include "server/blob_store.h"
#include "server/clock.h"
#include "server/dataset_registry.h"
#include "server/http_server.h"
#include "server/job_service.h"
#include "server/job_store.h"
#include "server/job_validator.h"
#include "server/metrics_registry.h"
#include "server/scheduler.h"
#include "server/web_api.h"
#include "server/worker_service.h"
#include "server/worker_supervisor.h"

namespace qnet::server {

struct QnetServerOptions {
  std::string listen = "0.0.0.0:50051";      // gRPC, HOST:PORT (port 0 = any free port)
  std::string http_listen = "0.0.0.0:8080";  // "" = no HTTP server
  std::string data_dir;
  int local_workers = 0;
  int lease_seconds = 30;
  int max_attempts = 3;
  int64_t max_queued = 200000;
  int64_t max_blob_bytes = int64_t{1} << 30;
  int max_wait_seconds = 60;          // cap on AcquireLease long-polls
  std::vector<std::string> datasets;  // "NAME=FORMAT:DIR"
  // Registered as "fashion-mnist" (idx) when the folder exists; "" = no default dataset.
  std::string default_dataset_dir = "/usr/share/datasets/fashion-mnist";
  std::string worker_binary;  // "" = look next to qnetd
  // Non-empty: WorkerService calls must carry "authorization: Bearer <worker_token>" (local
  // workers get it in their environment); "" = workers are not authenticated.
  std::string worker_token;
  std::string chartjs_path = "/usr/share/javascript/chart.js/chart.min.js";
  // Where jobs are stored, as OpenJobStore takes it; "" = DefaultJobStoreUri(data_dir).
  std::string store_uri;
  // Tests: this store instead of store_uri (not owned; it must outlive the server, which closes
  // it on Shutdown).
  JobStore* store = nullptr;
  const Clock* clock = nullptr;  // nullptr = the system clock
};

class QnetServer {
 public:
  static absl::StatusOr<std::unique_ptr<QnetServer>> Start(const QnetServerOptions& options);
  ~QnetServer();  // Shutdown() with the default grace
  QnetServer(const QnetServer&) = delete;
  QnetServer& operator=(const QnetServer&) = delete;

  // "HOST:PORT" as listened on, with the real port.
  const std::string& grpc_address() const { return grpc_address_; }
  std::string http_address() const { return http_ != nullptr ? http_->address() : ""; }
  bool serving() const { return !draining_.load(); }

  void Shutdown(absl::Duration grace = absl::Seconds(10));

  Scheduler& scheduler() { return *scheduler_; }
  MetricsRegistry& metrics() { return *metrics_; }
  const BlobStore& blobs() const { return *blobs_; }
  JobStore& store() { return *store_; }

 private:
  explicit QnetServer(const QnetServerOptions& options);
  absl::Status Init();
  void ReapLeases();

  const QnetServerOptions options_;
  int lock_fd_ = -1;
  SystemClock system_clock_;
  std::unique_ptr<MetricsRegistry> metrics_;
  std::unique_ptr<BlobStore> blobs_;
  DatasetRegistry datasets_;
  std::unique_ptr<JobStore> owned_store_;  // null when options.store was given
  JobStore* store_ = nullptr;
  std::unique_ptr<Scheduler> scheduler_;
  std::unique_ptr<JobValidator> validator_;
  std::unique_ptr<JobServiceImpl> job_service_;
  std::unique_ptr<BlobServiceImpl> blob_service_;
  std::unique_ptr<WorkerServiceImpl> worker_service_;
  std::unique_ptr<grpc::Server> grpc_server_;
  std::string grpc_address_;
  std::unique_ptr<WebApi> web_api_;
  std::unique_ptr<HttpServer> http_;
  std::unique_ptr<WorkerSupervisor> workers_;

  std::atomic<bool> draining_{false};
  std::mutex reaper_mu_;
  std::condition_variable reaper_cv_;
  bool reaper_stop_ = false;
  std::thread reaper_;
  std::mutex shutdown_mu_;
  bool shut_down_ = false;
};

// The version qnetd reports (qnet_build_info, dashboard).
const char* QnetVersion();

}  // namespace qnet::server

#endif  // QNET_SERVER_QNET_SERVER_H_
