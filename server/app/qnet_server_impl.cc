#include "server/app/qnet_server_impl.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <system_error>

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/resource_quota.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server_builder.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "server/auth/grpc_auth.h"
#include "server/metrics/grpc_metrics_interceptor.h"
#include "server/store/job_store_registry.h"
#include "spdlog/spdlog.h"

#ifndef QNET_VERSION
#define QNET_VERSION "0.0.0"
#endif

namespace qnet::server {
namespace {

namespace fs = std::filesystem;

constexpr int kMaxMessageBytes = 16 << 20;  // upload chunks are <= 1 MiB; room to spare
constexpr int kKeepaliveTimeoutMs = 20000;

// gRPC takes milliseconds as an int; 0 (off) and anything past INT_MAX mean "never".
int SecondsToMs(int seconds) {
  return seconds > 0 ? static_cast<int>(std::min<int64_t>(int64_t{seconds} * 1000, INT_MAX))
                     : INT_MAX;
}

// What HTTP may hold open: a quarter of the descriptor limit at most, leaving the rest to gRPC,
// the job store and blob files.
int HttpConnectionCap(int wanted) {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur == RLIM_INFINITY) return wanted;
  const int cap = static_cast<int>(std::clamp<rlim_t>(limit.rlim_cur / 4, 1, INT_MAX));
  if (wanted > cap) {
    spdlog::warn("HTTP connections capped at {} (a quarter of the descriptor limit {})", cap,
                 limit.rlim_cur);
  }
  return std::min(wanted, cap);
}

absl::StatusOr<std::string> ReadPem(const std::string& path, absl::string_view flag) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  if (in) text << in.rdbuf();
  if (!in || text.str().empty()) {
    return absl::InvalidArgumentError(absl::StrCat(flag, ": cannot read ", path));
  }
  return text.str();
}

// Only these hosts are reachable from this machine alone.
bool IsLoopback(const std::string& address) {
  absl::StatusOr<std::pair<std::string, int>> hp = SplitHostPort(address);
  if (!hp.ok()) return false;
  const std::string& host = hp->first;
  return host == "localhost" || host == "::1" || host == "[::1]" || absl::StartsWith(host, "127.");
}

// Where local workers should connect: a wildcard listen address means "this machine".
std::string ConnectAddress(const std::string& grpc_address) {
  absl::StatusOr<std::pair<std::string, int>> hp = SplitHostPort(grpc_address);
  if (!hp.ok()) return grpc_address;
  if (hp->first == "0.0.0.0" || hp->first == "[::]" || hp->first == "::" || hp->first.empty()) {
    return absl::StrCat("127.0.0.1:", hp->second);
  }
  return grpc_address;
}

}  // namespace

const char* QnetVersion() { return QNET_VERSION; }

absl::StatusOr<std::unique_ptr<QnetServer>> QnetServer::Start(const QnetServerOptions& options) {
  return QnetServerImpl::Start(options);
}

QnetServerImpl::QnetServerImpl(const QnetServerOptions& options) : options_(options) {}

absl::StatusOr<std::unique_ptr<QnetServerImpl>> QnetServerImpl::Start(
    const QnetServerOptions& options) {
  std::unique_ptr<QnetServerImpl> server(new QnetServerImpl(options));
  if (absl::Status s = server->Init(); !s.ok()) {
    server->Shutdown(absl::ZeroDuration());
    return s;
  }
  return server;
}

absl::Status QnetServerImpl::Init() {
  const QnetServerOptions& o = options_;
  if (o.data_dir.empty()) return absl::InvalidArgumentError("--data-dir is required");
  if (o.lease_seconds < 1) return absl::InvalidArgumentError("--lease-seconds must be >= 1");
  if (o.max_attempts < 1) return absl::InvalidArgumentError("--max-attempts must be >= 1");
  if (o.max_queued < 1) return absl::InvalidArgumentError("--max-queued must be >= 1");
  if (o.max_blob_bytes < 1) return absl::InvalidArgumentError("--max-blob-bytes must be >= 1");
  if (o.local_workers < 0) return absl::InvalidArgumentError("--local-workers must be >= 0");
  if (o.quota_queued_jobs < 0 || o.quota_running_jobs < 0 || o.quota_upload_bytes < 0 ||
      o.quota_submits_per_minute < 0 || o.retention_days < 0 || o.upload_grace_hours < 0) {
    return absl::InvalidArgumentError(
        "--quota-*, --retention-days and --upload-grace-hours must be >= 0 (0 = no limit)");
  }
  if (o.grpc_max_threads < 2 || o.grpc_max_streams_per_connection < 1 ||
      o.upload_idle_seconds < 1) {
    return absl::InvalidArgumentError(
        "--grpc-max-threads must be >= 2, --grpc-max-streams-per-connection and "
        "--upload-idle-seconds >= 1");
  }

  if (absl::Status s = InitAuth(); !s.ok()) return s;

  std::error_code ec;
  fs::create_directories(o.data_dir, ec);
  if (ec) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot create --data-dir ", o.data_dir, ": ", ec.message()));
  }
  // One qnetd per data folder: two schedulers over one store would hand out the same jobs.
  const std::string lock_path = o.data_dir + "/qnetd.lock";
  lock_fd_ = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (lock_fd_ < 0) {
    return absl::FailedPreconditionError(absl::StrCat("cannot write in --data-dir ", o.data_dir,
                                                      ": ", lock_path, ": ", std::strerror(errno),
                                                      " (qnetd needs a writable data folder)"));
  }
  if (::flock(lock_fd_, LOCK_EX | LOCK_NB) != 0) {
    return absl::FailedPreconditionError(absl::StrCat("another qnetd is using --data-dir ",
                                                      o.data_dir, " (", lock_path, " is locked)"));
  }

  std::string worker_binary;
  if (o.local_workers > 0) {
    absl::StatusOr<std::string> found = WorkerSupervisor::FindWorkerBinary(o.worker_binary);
    if (!found.ok()) return found.status();
    worker_binary = *found;
  }

  // Before the slower steps (dataset import), so a mistyped --store fails at once.
  if (o.store != nullptr) {
    store_ = o.store;
  } else {
    absl::StatusOr<std::unique_ptr<JobStore>> store =
        OpenJobStore(o.store_uri.empty() ? DefaultJobStoreUri(o.data_dir) : o.store_uri);
    if (!store.ok()) {
      if (o.store_uri.empty()) return store.status();
      return absl::Status(store.status().code(),
                          absl::StrCat("--store: ", store.status().message()));
    }
    owned_store_ = *std::move(store);
    store_ = owned_store_.get();
  }

  metrics_ = std::make_unique<MetricsRegistry>(QnetVersion());
  if (!o.audit_log_path.empty()) {
    absl::StatusOr<std::unique_ptr<AuditLog>> audit =
        AuditLog::Open(o.audit_log_path, metrics_.get());
    if (!audit.ok()) return audit.status();
    audit_ = *std::move(audit);
  }

  absl::StatusOr<std::unique_ptr<BlobStore>> blobs =
      BlobStore::Open(o.data_dir + "/blobs", o.max_blob_bytes);
  if (!blobs.ok()) return blobs.status();
  blobs_ = *std::move(blobs);

  if (!o.default_dataset_dir.empty() && fs::is_directory(o.default_dataset_dir, ec)) {
    if (absl::Status s = datasets_.Add("fashion-mnist", "idx", o.default_dataset_dir); !s.ok()) {
      return s;
    }
  }
  for (const std::string& flag : o.datasets) {
    absl::StatusOr<DatasetRegistry::Flag> f = DatasetRegistry::ParseFlag(flag);
    if (!f.ok()) return f.status();
    if (absl::Status s = datasets_.Add(f->name, f->format, f->path); !s.ok()) return s;
  }
  if (absl::Status s = datasets_.ImportFiles(*blobs_, o.data_dir + "/dataset-digests.json");
      !s.ok()) {
    return s;
  }
  if (absl::Status s = datasets_.LoadUploaded(*blobs_, o.data_dir + "/datasets.json"); !s.ok()) {
    return s;
  }

  SchedulerOptions sched;
  sched.lease_duration = absl::Seconds(o.lease_seconds);
  sched.max_attempts = o.max_attempts;
  sched.max_queued = o.max_queued;
  sched.max_wait = absl::Seconds(std::max(0, o.max_wait_seconds));
  sched.quotas = {.queued_jobs = o.quota_queued_jobs,
                  .running_jobs = o.quota_running_jobs,
                  .submits_per_minute = o.quota_submits_per_minute,
                  // Admins have none: the identity of that name in the tokens file (or
                  // anyone, without authentication).
                  .exempt = [this](absl::string_view owner) {
                    absl::StatusOr<Identity> who = auth_->AuthenticateCertificate(owner);
                    return who.ok() && who->is_admin();
                  }};
  const Clock* clock = o.clock != nullptr ? o.clock : &system_clock_;
  scheduler_ = std::make_unique<Scheduler>(store_, clock, sched, metrics_.get());
  if (absl::Status s = scheduler_->Recover(); !s.ok()) return s;

  absl::StatusOr<std::unique_ptr<BlobGrants>> grants =
      BlobGrants::Open(o.data_dir + "/blob-grants.log", blobs_.get(), o.quota_upload_bytes);
  if (!grants.ok()) return grants.status();
  grants_ = *std::move(grants);
  sweeper_ = std::make_unique<RetentionSweeper>(
      scheduler_.get(), store_, blobs_.get(), grants_.get(), [this] { return datasets_.Digests(); },
      clock,
      RetentionOptions{.keep_finished = absl::Hours(24) * o.retention_days,
                       .upload_grace = absl::Hours(o.upload_grace_hours)},
      metrics_.get());
  validator_ = std::make_unique<JobValidator>(&datasets_, blobs_.get(), o.job_limits);
  job_service_ = std::make_unique<JobServiceImpl>(scheduler_.get(), validator_.get(), &datasets_,
                                                  blobs_.get(), grants_.get(), auth_.get());
  blob_service_ = std::make_unique<BlobServiceImpl>(blobs_.get(), metrics_.get(), grants_.get(),
                                                    scheduler_.get(), &datasets_, auth_.get(),
                                                    absl::Seconds(o.upload_idle_seconds));
  worker_service_ = std::make_unique<WorkerServiceImpl>(scheduler_.get(), &datasets_, blobs_.get(),
                                                        grants_.get(), auth_.get());
  job_service_->OnJobDeleted([this] { sweeper_->Wake(); });
  metrics_->SetCollectHook([this] {
    sweeper_->RefreshDiskGauges();
    SchedulerStats stats = scheduler_->Stats();
    metrics_->SetJobCounts(stats.jobs);
    metrics_->SetWorkers(stats.workers_busy, stats.workers_idle);
  });

  absl::StatusOr<std::pair<std::string, int>> grpc_hp = SplitHostPort(o.listen);
  if (!grpc_hp.ok()) return grpc_hp.status();
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int port = 0;
  absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> credentials = PublicCredentials();
  if (!credentials.ok()) return credentials.status();
  builder.AddListeningPort(o.listen, *credentials, &port);
  // With TLS on the public port, local workers and the /healthz probe use a loopback port of
  // their own without it (the probe has no client certificate to show an mTLS port).
  const bool local_port = !o.tls_cert_path.empty();
  int worker_port = 0;
  if (local_port) builder.AddListeningPort("127.0.0.1:0", LoopbackCredentials(), &worker_port);
  builder.RegisterService(job_service_.get());
  builder.RegisterService(blob_service_.get());
  builder.RegisterService(worker_service_.get());
  // Handlers block (durable writes, long-polls); keep enough polling threads that gRPC does not
  // create and destroy a thread per call under load.
  builder.SetSyncServerOption(grpc::ServerBuilder::SyncServerOption::MIN_POLLERS, 2);
  builder.SetSyncServerOption(grpc::ServerBuilder::SyncServerOption::MAX_POLLERS, 16);
  builder.SetMaxReceiveMessageSize(kMaxMessageBytes);
  builder.SetMaxSendMessageSize(kMaxMessageBytes);
  // Bounds on what clients can hold: threads, streams per connection, dead or idle transports.
  grpc::ResourceQuota quota("qnetd");
  quota.SetMaxThreads(o.grpc_max_threads);
  builder.SetResourceQuota(quota);
  builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS, o.grpc_max_streams_per_connection);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, SecondsToMs(o.grpc_keepalive_seconds));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, kKeepaliveTimeoutMs);
  builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_IDLE_MS,
                             SecondsToMs(o.grpc_max_connection_idle_seconds));
  builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_MS,
                             SecondsToMs(o.grpc_max_connection_age_seconds));
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> interceptors;
  interceptors.push_back(std::make_unique<GrpcMetricsInterceptorFactory>(metrics_.get()));
  if (audit_ != nullptr) {
    interceptors.push_back(
        std::make_unique<GrpcAuditInterceptorFactory>(audit_.get(), auth_.get()));
  }
  builder.experimental().SetInterceptorCreators(std::move(interceptors));
  grpc_server_ = builder.BuildAndStart();
  if (grpc_server_ == nullptr || port == 0 || (local_port && worker_port == 0)) {
    grpc_server_.reset();
    return absl::UnavailableError(absl::StrCat(
        "cannot listen for gRPC on ", o.listen, " (address in use or invalid",
        o.tls_cert_path.empty() ? "" : ", or --tls-cert and --tls-key do not match", "?)"));
  }
  grpc_address_ = absl::StrCat(grpc_hp->first, ":", port);
  grpc_server_->GetHealthCheckService()->SetServingStatus(true);
  const std::string local_address =
      local_port ? absl::StrCat("127.0.0.1:", worker_port) : ConnectAddress(grpc_address_);
  health_probe_ = std::make_unique<GrpcHealthProbe>(local_address);

  if (!o.http_listen.empty()) {
    // /healthz asks gRPC's health service, so the two never disagree.
    web_api_ = std::make_unique<WebApi>(
        scheduler_.get(), metrics_.get(), auth_.get(),
        [this] { return serving() ? health_probe_->Check() : absl::UnavailableError("draining"); },
        o.chartjs_path, QnetVersion());
    HttpServerOptions http_options;
    // More than one, so a /healthz waiting on its gRPC probe holds up no other request.
    http_options.threads = 4;
    http_options.allowed_hosts = o.http_allowed_hosts;
    http_options.max_connections = HttpConnectionCap(o.http_max_connections);
    http_options.max_connections_per_client = o.http_max_connections_per_client;
    http_options.tls_cert_path = o.tls_cert_path;
    http_options.tls_key_path = o.tls_key_path;
    http_options.tls_client_ca_path = o.tls_client_ca_path;
    absl::StatusOr<std::unique_ptr<HttpServer>> http = HttpServer::Start(
        o.http_listen, [api = web_api_.get()](const HttpRequest& r) { return api->Handle(r); },
        std::move(http_options));
    if (!http.ok()) return http.status();
    http_ = *std::move(http);
  }

  reaper_ = std::thread([this] { ReapLeases(); });
  sweeper_->Start();

  if (o.local_workers > 0) {
    WorkerSupervisorOptions w;
    w.binary = worker_binary;
    w.server_address = local_address;
    w.data_dir = o.data_dir;
    w.count = o.local_workers;
    // Each local worker is an identity of its own, so leases and uploads stay bound to it.
    for (int i = 0; i < o.local_workers; ++i) {
      absl::StatusOr<std::string> token =
          auth_->AddGenerated({absl::StrCat("local-worker-", i), Role::kWorker});
      if (!token.ok()) return token.status();
      w.worker_tokens.push_back(*std::move(token));
    }
    workers_ = std::make_unique<WorkerSupervisor>(std::move(w));
    workers_->Start();
  }
  spdlog::info("qnetd {} serving gRPC on {}{}{}; data in {}", QnetVersion(), grpc_address_,
               http_ != nullptr ? ", HTTP on " : "", http_address(), o.data_dir);
  return absl::OkStatus();
}

absl::Status QnetServerImpl::InitAuth() {
  const QnetServerOptions& o = options_;
  const bool tls = !o.tls_cert_path.empty() || !o.tls_key_path.empty();
  if (tls && (o.tls_cert_path.empty() || o.tls_key_path.empty())) {
    return absl::InvalidArgumentError("--tls-cert and --tls-key go together");
  }
  if (!o.tls_client_ca_path.empty() && !tls) {
    return absl::InvalidArgumentError("--tls-client-ca needs --tls-cert and --tls-key");
  }
  if (!o.auth_tokens_path.empty() && o.insecure_no_auth) {
    return absl::InvalidArgumentError("--auth-tokens and --insecure-no-auth contradict each other");
  }
  if (o.auth_tokens_path.empty()) {
    if (!o.tls_client_ca_path.empty()) {
      return absl::InvalidArgumentError(
          "--tls-client-ca needs --auth-tokens: a certificate's CN names an identity there");
    }
    for (const std::string& address : {o.listen, o.http_listen}) {
      if (!o.insecure_no_auth && !address.empty() && !IsLoopback(address)) {
        return absl::FailedPreconditionError(absl::StrCat(
            "refusing to listen on ", address,
            " without authentication: pass --auth-tokens FILE (`qnetd token --name NAME --role "
            "ROLE` makes an entry), or --insecure-no-auth to let anyone who can reach it act as "
            "admin"));
      }
    }
    auth_ = Authenticator::Open();
    spdlog::warn("authentication is off ({}): every caller is admin",
                 o.insecure_no_auth ? "--insecure-no-auth" : "loopback only, no --auth-tokens");
    return absl::OkStatus();
  }
  for (const std::string& address : {o.listen, o.http_listen}) {
    if (!tls && !address.empty() && !IsLoopback(address)) {
      return absl::FailedPreconditionError(
          absl::StrCat("tokens would cross the network in clear text on ", address,
                       ": add --tls-cert and --tls-key, or listen on a loopback address"));
    }
  }
  absl::StatusOr<std::unique_ptr<Authenticator>> auth = Authenticator::FromFile(o.auth_tokens_path);
  if (!auth.ok()) return auth.status();
  auth_ = *std::move(auth);
  spdlog::info("authentication on: identities from {}{}", o.auth_tokens_path,
               o.tls_client_ca_path.empty() ? "" : " and client certificates");
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> QnetServerImpl::PublicCredentials() const {
  const QnetServerOptions& o = options_;
  if (o.tls_cert_path.empty()) return LoopbackCredentials();
  absl::StatusOr<std::string> cert = ReadPem(o.tls_cert_path, "--tls-cert");
  if (!cert.ok()) return cert.status();
  absl::StatusOr<std::string> key = ReadPem(o.tls_key_path, "--tls-key");
  if (!key.ok()) return key.status();
  grpc::SslServerCredentialsOptions ssl(
      o.tls_client_ca_path.empty() ? GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE
                                   : GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  if (!o.tls_client_ca_path.empty()) {
    absl::StatusOr<std::string> ca = ReadPem(o.tls_client_ca_path, "--tls-client-ca");
    if (!ca.ok()) return ca.status();
    ssl.pem_root_certs = *std::move(ca);
  }
  ssl.pem_key_cert_pairs.push_back({*std::move(key), *std::move(cert)});
  std::shared_ptr<grpc::ServerCredentials> credentials = grpc::SslServerCredentials(ssl);
  if (!auth_->open()) {
    credentials->SetAuthMetadataProcessor(
        std::make_shared<GrpcAuthProcessor>(auth_.get(), audit_.get()));
  }
  return credentials;
}

std::shared_ptr<grpc::ServerCredentials> QnetServerImpl::LoopbackCredentials() const {
  if (auth_->open()) return grpc::InsecureServerCredentials();
  // Insecure credentials cannot authenticate calls; local ones can, and admit loopback peers
  // only (clients connect to them with plain insecure channels).
  std::shared_ptr<grpc::ServerCredentials> credentials =
      grpc::experimental::LocalServerCredentials(LOCAL_TCP);
  credentials->SetAuthMetadataProcessor(
      std::make_shared<GrpcAuthProcessor>(auth_.get(), audit_.get()));
  return credentials;
}

absl::Status QnetServerImpl::ReloadAuthTokens() {
  if (auth_ == nullptr || auth_->open()) {
    return absl::FailedPreconditionError("qnetd runs without --auth-tokens: nothing to reload");
  }
  return auth_->Reload();
}

void QnetServerImpl::ReapLeases() {
  std::unique_lock<std::mutex> lock(reaper_mu_);
  while (!reaper_stop_) {
    lock.unlock();
    const int n = scheduler_->ExpireLeases();
    if (n > 0) spdlog::info("{} lease(s) expired", n);
    lock.lock();
    reaper_cv_.wait_for(lock, std::chrono::milliseconds(500), [this] { return reaper_stop_; });
  }
}

void QnetServerImpl::Shutdown(absl::Duration grace) {
  std::lock_guard<std::mutex> lock(shutdown_mu_);
  if (shut_down_) return;
  shut_down_ = true;
  draining_ = true;
  spdlog::info("draining: no new jobs or leases; waiting up to {} for running calls",
               absl::FormatDuration(grace));
  if (grpc_server_ != nullptr) grpc_server_->GetHealthCheckService()->SetServingStatus(false);
  if (scheduler_ != nullptr) scheduler_->Shutdown();  // wakes long-polls and watches
  if (workers_ != nullptr) workers_->Stop(grace);     // they may still report while stopping
  if (grpc_server_ != nullptr) {
    grpc_server_->Shutdown(absl::ToChronoTime(absl::Now() + grace));
    grpc_server_->Wait();
    spdlog::debug("gRPC server stopped");
  }
  {
    std::lock_guard<std::mutex> reaper_lock(reaper_mu_);
    reaper_stop_ = true;
  }
  reaper_cv_.notify_all();
  if (reaper_.joinable()) reaper_.join();
  spdlog::debug("lease reaper stopped");
  if (sweeper_ != nullptr) sweeper_->Stop();
  if (http_ != nullptr) http_->Stop();
  spdlog::debug("HTTP server stopped");
  if (store_ != nullptr) store_->Close();
  if (lock_fd_ >= 0) {
    ::close(lock_fd_);
    lock_fd_ = -1;
  }
  spdlog::info("qnetd stopped cleanly");
}

QnetServerImpl::~QnetServerImpl() { Shutdown(); }

}  // namespace qnet::server
