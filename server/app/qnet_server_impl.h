// QnetServerImpl: the QnetServer of server/qnet_server.h with its components: it owns them,
// wires them together and starts and drains them in order. Only tests and the load generator
// include this header, for the scheduler, the store and the metrics of an in-process qnetd.
//
//   absl::StatusOr<std::unique_ptr<QnetServerImpl>> server = QnetServerImpl::Start(options);
//   (*server)->store().commits();
#ifndef QNET_SERVER_APP_QNET_SERVER_IMPL_H_
#define QNET_SERVER_APP_QNET_SERVER_IMPL_H_

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/api/blob_service.h"
#include "server/api/job_service.h"
#include "server/api/job_validator.h"
#include "server/api/worker_service.h"
#include "server/app/grpc_health_probe.h"
#include "server/app/worker_supervisor.h"
#include "server/auth/audit_log.h"
#include "server/auth/authenticator.h"
#include "server/blobs/blob_store.h"
#include "server/datasets/dataset_registry.h"
#include "server/http/http_server.h"
#include "server/http/web_api.h"
#include "server/metrics/metrics_registry.h"
#include "server/qnet_server.h"
#include "server/scheduling/clock.h"
#include "server/scheduling/retention_sweeper.h"
#include "server/scheduling/scheduler.h"
#include "server/store/job_store.h"

namespace qnet::server {

class QnetServerImpl final : public QnetServer {
 public:
  // QnetServer::Start, typed for callers that reach into the components.
  static absl::StatusOr<std::unique_ptr<QnetServerImpl>> Start(const QnetServerOptions& options);
  ~QnetServerImpl() override;  // Shutdown() with the default grace
  QnetServerImpl(const QnetServerImpl&) = delete;
  QnetServerImpl& operator=(const QnetServerImpl&) = delete;

  const std::string& grpc_address() const override { return grpc_address_; }
  std::string http_address() const override { return http_ != nullptr ? http_->address() : ""; }
  bool serving() const override { return !draining_.load(); }

  void Shutdown(absl::Duration grace = absl::Seconds(10)) override;
  absl::Status ReloadAuthTokens() override;

  Scheduler& scheduler() { return *scheduler_; }
  MetricsRegistry& metrics() { return *metrics_; }
  const BlobStore& blobs() const { return *blobs_; }
  JobStore& store() { return *store_; }

 private:
  explicit QnetServerImpl(const QnetServerOptions& options);
  absl::Status Init();
  // Who may connect and how: the authenticator, and the credentials of the public port.
  absl::Status InitAuth();
  absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> PublicCredentials() const;
  // Credentials of a loopback port without TLS (local workers when the public port has TLS).
  std::shared_ptr<grpc::ServerCredentials> LoopbackCredentials() const;
  void ReapLeases();

  const QnetServerOptions options_;
  int lock_fd_ = -1;
  SystemClock system_clock_;
  std::unique_ptr<MetricsRegistry> metrics_;
  std::unique_ptr<Authenticator> auth_;
  std::unique_ptr<AuditLog> audit_;  // null without --audit-log
  std::unique_ptr<BlobStore> blobs_;
  std::unique_ptr<BlobGrants> grants_;
  DatasetRegistry datasets_;
  std::unique_ptr<JobStore> owned_store_;  // null when options.store was given
  JobStore* store_ = nullptr;
  std::unique_ptr<Scheduler> scheduler_;
  std::unique_ptr<JobValidator> validator_;
  std::unique_ptr<JobServiceImpl> job_service_;
  std::unique_ptr<BlobServiceImpl> blob_service_;
  std::unique_ptr<WorkerServiceImpl> worker_service_;
  std::unique_ptr<RetentionSweeper> sweeper_;
  std::unique_ptr<grpc::Server> grpc_server_;
  std::string grpc_address_;
  std::unique_ptr<GrpcHealthProbe> health_probe_;
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

}  // namespace qnet::server

#endif  // QNET_SERVER_APP_QNET_SERVER_IMPL_H_
