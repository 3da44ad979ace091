// qnetd: the qnet server. Parses flags, runs a QnetServer, prints one line
//   listening grpc=HOST:PORT http=HOST:PORT
// to stdout once serving, logs to stderr, and drains on SIGTERM/SIGINT (exit 0).
//
//   qnetd --listen 0.0.0.0:50051 --http-listen 0.0.0.0:8080 --data-dir /var/lib/qnet
//         [--local-workers N] [--lease-seconds S] [--max-attempts N] [--max-queued N]
//         [--max-blob-bytes N] [--dataset NAME=FORMAT:PATH]... [--worker-binary PATH]
//         [--worker-token-file FILE] [--store URI] [--http-allowed-hosts H1,H2]
//         [--http-max-connections N] [--grpc-max-threads N] ... (--help lists every limit)
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
#include "common/token_file.h"
#include "datasets/dataset_format.h"
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

}  // namespace

int main(int argc, char** argv) {
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
  app.add_option("--data-dir", options.data_dir, "folder for the job store and blobs")->required();
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
  app.add_option("--worker-token-file", worker_token_file,
                 "file holding the token workers must present (default: workers are not "
                 "authenticated; use it whenever workers reach qnetd over a network)");
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
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  spdlog::set_default_logger(spdlog::stderr_color_mt("qnetd"));
  spdlog::set_level(spdlog::level::from_str(log_level));
  if (!worker_token_file.empty()) {
    absl::StatusOr<std::string> token = qnet::ReadTokenFile(worker_token_file);
    if (!token.ok()) {
      std::cerr << "qnetd: --worker-token-file: " << token.status().message() << "\n";
      return 2;
    }
    options.worker_token = *std::move(token);
  }

  RaiseDescriptorLimit();

  // Signals go to one thread (sigwait below); every thread started from here inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
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
  sigwait(&signals, &sig);
  spdlog::info("{} received; shutting down (send it again to stop at once)", strsignal(sig));
  // A second signal, not a duplicate of the first (a supervisor and a terminal may both send
  // one), stops at once.
  std::thread([signals, first = std::chrono::steady_clock::now()] {
    while (true) {
      int again = 0;
      sigwait(&signals, &again);
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
