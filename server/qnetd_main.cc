// qnetd: the qnet server. Parses flags, runs a QnetServer, prints one line
//   listening grpc=HOST:PORT http=HOST:PORT
// to stdout once serving, logs to stderr, drains on SIGTERM/SIGINT (exit 0) and reads the tokens
// file again on SIGHUP. `qnetd token` prints a new token and its tokens-file line.
//
//   qnetd --listen 0.0.0.0:50051 --http-listen 0.0.0.0:8080 --data-dir /var/lib/qnet
//         --auth-tokens /etc/qnet/tokens --tls-cert cert.pem --tls-key key.pem
//         [--tls-client-ca ca.pem] [--local-workers N] [--lease-seconds S] [--max-attempts N]
//         [--max-queued N] [--max-blob-bytes N] [--max-job-epochs N] [--dataset
//         NAME=FORMAT:PATH]...
//         [--worker-binary PATH] [--store URI] [--http-allowed-hosts H1,H2]
//         [--quota-queued-jobs N] [--quota-running-jobs N] [--quota-upload-bytes N]
//         [--quota-submits-per-minute R] [--retention-days N] [--upload-grace-hours N]
//         [--http-max-connections N] [--grpc-max-threads N] ... (--help lists every limit)
//         [--audit-log FILE]
//   qnetd token --name alice --role client
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <thread>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/token_file.h"
#include "datasets/dataset_format.h"
#include "server/auth/identity.h"
#include "server/auth/token_table.h"
#include "server/qnet_server.h"
#include "server/store/job_store_registry.h"
#include "spdlog/sinks/stdout_color_sinks.h"
#include "spdlog/spdlog.h"

namespace {

// Every connection is a descriptor; the common default soft limit (1024) is far below what the
// hard limit allows, and running out makes accept() fail for gRPC and HTTP alike.
void RaiseDescriptorLimit() {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur >= limit.rlim_max) return;
  const rlim_t before = limit.rlim_cur;
  limit.rlim_cur = limit.rlim_max;
  if (::setrlimit(RLIMIT_NOFILE, &limit) != 0) {
    spdlog::warn("cannot raise the descriptor limit from {}: {}", before, std::strerror(errno));
    return;
  }
  spdlog::debug("descriptor limit raised from {} to {}", before, limit.rlim_cur);
}

// `qnetd token`: a new token on stdout's first line, the line for the tokens file on the second.
int PrintNewToken(const std::string& name, const std::string& role_name) {
  if (absl::Status s = qnet::server::CheckIdentityName(name); !s.ok()) {
    std::cerr << "qnetd token: --name: " << s.message() << "\n";
    return 2;
  }
  absl::StatusOr<qnet::server::Role> role = qnet::server::ParseRole(role_name);
  if (!role.ok()) {
    std::cerr << "qnetd token: --role: " << role.status().message() << "\n";
    return 2;
  }
  const std::string token = qnet::server::NewToken();
  std::cout << token << "\n"
            << name << " " << role_name << " " << qnet::server::TokenHash(token) << "\n";
  std::cerr << "give the first line to " << name
            << " (--token-file or QNET_TOKEN); add the second to qnetd's --auth-tokens file and "
               "send qnetd SIGHUP\n";
  return 0;
}

// The flag's former meaning is an identity in the tokens file: say which line to add.
int RefuseWorkerTokenFile(const std::string& path) {
  absl::StatusOr<std::string> token = qnet::ReadTokenFile(path);
  std::cerr << "qnetd: --worker-token-file is replaced by --auth-tokens FILE, which names every "
               "identity and its role";
  if (token.ok()) {
    std::cerr << "; for this token add the line\n  worker worker "
              << qnet::server::TokenHash(*token) << "\n";
  } else {
    std::cerr << " (" << token.status().message() << ")\n";
  }
  std::cerr << "(`qnetd token --name NAME --role ROLE` makes new entries)\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  // gRPC locks absl::Mutex on every call; abseil built without NDEBUG (as Debian's is) checks
  // each lock for deadlock cycles, a graph update per acquisition (docs/BENCHMARKS.md).
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  qnet::server::QnetServerOptions options;
  int shutdown_grace_seconds = 10;
  std::string log_level = "info";
  std::string worker_token_file;
  CLI::App app{"qnetd: the qnet model-compression server (gRPC API, job queue, blobs, metrics)"};
  app.add_option("--listen", options.listen, "gRPC address HOST:PORT (port 0 = any free port)")
      ->capture_default_str();
  app.add_option("--http-listen", options.http_listen,
                 "HTTP address for /metrics, /healthz, REST and the dashboard")
      ->capture_default_str();
  app.add_option("--data-dir", options.data_dir, "folder for the job store and blobs (required)");
  app.add_option("--store", options.store_uri,
                 absl::StrCat("job store URI (default sqlite://DATA_DIR/jobs.db); schemes: ",
                              qnet::server::KnownSchemes()));
  app.add_option("--local-workers", options.local_workers,
                 "qnet-worker processes to run next to the server")
      ->capture_default_str()
      ->check(CLI::Range(0, 256));
  app.add_option("--lease-seconds", options.lease_seconds,
                 "lease duration; a worker that stops heart-beating this long loses its job")
      ->capture_default_str()
      ->check(CLI::Range(1, 86400));
  app.add_option("--max-attempts", options.max_attempts,
                 "attempts per job before it is FAILED (expired leases and retryable failures)")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000));
  app.add_option("--max-queued", options.max_queued,
                 "queued jobs beyond which SubmitJob answers RESOURCE_EXHAUSTED")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{100000000}));
  app.add_option("--max-blob-bytes", options.max_blob_bytes, "largest blob a client may upload")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 50));
  app.add_option("--max-job-priority", options.job_limits.max_priority,
                 "job priorities allowed: -N..N")
      ->capture_default_str()
      ->check(CLI::Range(0, qnet::job::kSchemaJobLimits.max_priority));
  app.add_option("--max-job-epochs", options.job_limits.max_epochs,
                 "most training epochs one job may ask for (fine-tuning plus pretraining)")
      ->capture_default_str()
      ->check(CLI::Range(0, qnet::job::kSchemaJobLimits.max_epochs));
  app.add_option("--max-job-batch-size", options.job_limits.max_batch_size,
                 "largest training batch size one job may ask for")
      ->capture_default_str()
      ->check(CLI::Range(1, qnet::job::kSchemaJobLimits.max_batch_size));
  app.add_option("--max-job-samples", options.job_limits.max_samples,
                 "largest max_train_samples / max_test_samples one job may ask for")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{0}, qnet::job::kSchemaJobLimits.max_samples));
  app.add_option("--dataset", options.datasets,
                 absl::StrCat("operator dataset NAME=FORMAT:PATH (FORMAT one of ",
                              qnet::datasets::DatasetFormatNameList(),
                              "); idx and cifar10 folders are copied to workers as blobs, other "
                              "formats are read in place: mount PATH on every worker; "
                              "repeatable"));
  app.add_option("--worker-binary", options.worker_binary,
                 "qnet-worker to run for --local-workers (default: next to qnetd)");
  app.add_option("--max-wait-seconds", options.max_wait_seconds,
                 "cap on how long AcquireLease long-polls")
      ->capture_default_str()
      ->check(CLI::Range(0, 3600));
  app.add_option("--shutdown-grace-seconds", shutdown_grace_seconds,
                 "on SIGTERM, how long running calls and local workers get to finish")
      ->capture_default_str()
      ->check(CLI::Range(0, 3600));
  app.add_option("--auth-tokens", options.auth_tokens_path,
                 "tokens file: one identity a line, NAME ROLE sha256:HEX (roles client, worker, "
                 "admin, metrics); every call needs one of them; re-read on SIGHUP");
  app.add_flag("--insecure-no-auth", options.insecure_no_auth,
               "serve without authentication on any address: everyone who can connect is admin "
               "(without --auth-tokens qnetd otherwise listens on loopback addresses only)");
  app.add_option("--tls-cert", options.tls_cert_path,
                 "TLS certificate chain (PEM) for gRPC and HTTPS");
  app.add_option("--tls-key", options.tls_key_path, "TLS private key (PEM) for gRPC and HTTPS");
  app.add_option("--tls-client-ca", options.tls_client_ca_path,
                 "require gRPC client certificates signed by this CA (PEM; over HTTPS one is "
                 "optional); a certificate's CN names its identity in the tokens file");
  app.add_option("--audit-log", options.audit_log_path,
                 "append one JSON line per state-changing call (who, what, which job, outcome)");
  app.add_option("--worker-token-file", worker_token_file,
                 "replaced by --auth-tokens (qnetd says which line to add)");
  app.add_option("--http-allowed-hosts", options.http_allowed_hosts,
                 "host names HTTP requests may address besides IP literals (DNS rebinding "
                 "protection; \"*\" = any; default: localhost and the --http-listen host)")
      ->delimiter(',');
  app.add_option("--http-max-connections", options.http_max_connections,
                 "open HTTP connections at most (and a quarter of the descriptor limit)")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000000));
  app.add_option("--http-max-connections-per-client", options.http_max_connections_per_client,
                 "open HTTP connections from one IP address at most")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000000));
  app.add_option("--grpc-max-threads", options.grpc_max_threads,
                 "threads serving gRPC calls at most (each long-poll holds one)")
      ->capture_default_str()
      ->check(CLI::Range(2, 100000));
  app.add_option("--grpc-max-streams-per-connection", options.grpc_max_streams_per_connection,
                 "concurrent gRPC calls on one connection at most")
      ->capture_default_str()
      ->check(CLI::Range(1, 100000));
  app.add_option("--grpc-keepalive-seconds", options.grpc_keepalive_seconds,
                 "ping idle gRPC transports this often; dead peers are dropped (0 = never)")
      ->capture_default_str()
      ->check(CLI::Range(0, 86400));
  app.add_option("--grpc-max-connection-idle-seconds", options.grpc_max_connection_idle_seconds,
                 "close gRPC connections without calls after this long (0 = never)")
      ->capture_default_str()
      ->check(CLI::Range(0, 86400 * 30));
  app.add_option("--grpc-max-connection-age-seconds", options.grpc_max_connection_age_seconds,
                 "ask clients to reconnect after this long; calls in flight finish (0 = never)")
      ->capture_default_str()
      ->check(CLI::Range(0, 86400 * 30));
  app.add_option("--upload-idle-seconds", options.upload_idle_seconds,
                 "cancel a blob upload that sends nothing for this long")
      ->capture_default_str()
      ->check(CLI::Range(1, 86400));
  // Quotas and retention (docs/ARCHITECTURE.md, "Quotas and retention"); admins have no quotas.
  app.add_option("--quota-queued-jobs", options.quota_queued_jobs,
                 "queued jobs per identity beyond which its submits get RESOURCE_EXHAUSTED "
                 "(0 = unlimited)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{0}, int64_t{100000000}));
  app.add_option(
         "--quota-running-jobs", options.quota_running_jobs,
         "jobs of one identity leased at once; its others wait in the queue (0 = unlimited)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{0}, int64_t{1000000}));
  app.add_option("--quota-upload-bytes", options.quota_upload_bytes,
                 "bytes of uploads (models, datasets) one identity may keep stored (0 = unlimited)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 60));
  app.add_option("--quota-submits-per-minute", options.quota_submits_per_minute,
                 "submits per minute per identity, in bursts of up to a minute's worth "
                 "(0 = unlimited)")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1e6));
  app.add_option("--retention-days", options.retention_days,
                 "delete finished jobs and their artifacts this many days after they end "
                 "(0 = keep them)")
      ->capture_default_str()
      ->check(CLI::Range(0, 36500));
  app.add_option("--upload-grace-hours", options.upload_grace_hours,
                 "remove uploads that no job or dataset uses after this many hours")
      ->capture_default_str()
      ->check(CLI::Range(0, 87600));
  std::string token_name, token_role;
  CLI::App* token =
      app.add_subcommand("token", "print a new random token and its tokens-file line");
  token->add_option("--name", token_name, "identity name")->required();
  token->add_option("--role", token_role, "client, worker, admin or metrics")->required();
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  if (token->parsed()) return PrintNewToken(token_name, token_role);
  if (!worker_token_file.empty()) return RefuseWorkerTokenFile(worker_token_file);

  spdlog::set_default_logger(spdlog::stderr_color_mt("qnetd"));
  spdlog::set_level(spdlog::level::from_str(log_level));
  RaiseDescriptorLimit();

  // Signals go to one thread (sigwait below); every thread started from here inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  ::signal(SIGPIPE, SIG_IGN);

  absl::StatusOr<std::unique_ptr<qnet::server::QnetServer>> server =
      qnet::server::QnetServer::Start(options);
  if (!server.ok()) {
    spdlog::critical("qnetd cannot start: {}", std::string(server.status().message()));
    return 1;
  }
  std::cout << "listening grpc=" << (*server)->grpc_address()
            << " http=" << (*server)->http_address() << std::endl;

  int sig = 0;
  while (sigwait(&signals, &sig) == 0 && sig == SIGHUP) {
    absl::Status reloaded = (*server)->ReloadAuthTokens();
    if (reloaded.ok()) {
      spdlog::info("SIGHUP: tokens file read again");
    } else {
      spdlog::error("SIGHUP: identities unchanged: {}", std::string(reloaded.message()));
    }
  }
  spdlog::info("{} received; shutting down (send it again to stop at once)", strsignal(sig));
  // A second signal, not a duplicate of the first (a supervisor and a terminal may both send
  // one), stops at once.
  std::thread([signals, first = std::chrono::steady_clock::now()] {
    while (true) {
      int again = 0;
      sigwait(&signals, &again);
      if (again == SIGHUP) continue;
      if (std::chrono::steady_clock::now() - first < std::chrono::seconds(2)) continue;
      spdlog::warn("{} again: exiting without draining", strsignal(again));
      std::_Exit(1);
    }
  }).detach();
  (*server)->Shutdown(absl::Seconds(shutdown_grace_seconds));
  server->reset();
  spdlog::shutdown();
  return 0;
}
