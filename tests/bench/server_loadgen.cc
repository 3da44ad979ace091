// qnet_loadgen: load generator for qnetd. It starts an in-process qnetd (QnetServer on
// 127.0.0.1:0 over a temp data folder) and a bare gRPC echo server, then measures with N client
// threads on loopback:
//   1. durable SubmitJob throughput and latency (target >= 1000 jobs/s, p99 < 50 ms);
//   2. GetJob throughput against Echo throughput, same client code (target >= 0.5x echo);
//   3. GetJob and AcquireLease latency with 1,000 vs 100,000 queued jobs (target within 1.5x).
// With --server it measures phases 1 and 2 against a running qnetd instead (echo stays local).
// --security tokens, tls or mtls runs the in-process qnetd with a tokens file: every call carries
// a bearer token over plaintext loopback (tokens) or TLS (tls), or the client certificate of CN
// alice (mtls; certificates from tests/server/auth/make_certs.sh in --pki), so phases 1 and 2
// show what security costs next to the default plaintext without authentication
// (docs/BENCHMARKS.md, "The cost of TLS and tokens"). With --server, the running qnetd is set up
// to match and --token gives the bearer token (tokens, tls), so qnetd and the generator can run
// on cores of their own (taskset).
//
//   qnet_loadgen                          # everything in-process, prints a table
//   qnet_loadgen --threads 16 --seconds 3 --submits 5000 --deep 100000
//   qnet_loadgen --server 127.0.0.1:50051 --dataset fashion-mnist
//   qnet_loadgen --security tls --pki /tmp/pki --deep 0
//   qnet_loadgen --server 127.0.0.1:50051 --dataset bench --security tls --pki /tmp/pki --token T
//
// The floor under those figures: --serve-echo runs only the bare echo server, with --security's
// transport (TLS for tls and mtls, client certificates required for mtls) and no authentication,
// until SIGTERM; --echo-server ADDRESS measures only Echo against it, so gRPC's own cost of TLS is
// measured with the server on a core of its own, as qnetd's is:
//
//   taskset -c 0 qnet_loadgen --serve-echo --security tls --pki /tmp/pki   # "listening echo=A"
//   taskset -c 1 qnet_loadgen --echo-server A --security tls --pki /tmp/pki --server-pid PID
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server_builder.h>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "qnet/bench/server_echo.grpc.pb.h"
#include "qnet/v1/job.grpc.pb.h"
#include "qnet/v1/worker.grpc.pb.h"
#include "server/app/qnet_server_impl.h"
#include "server/auth/token_table.h"
#include "server/store/sqlite_job_store.h"
#include "spdlog/spdlog.h"

namespace {

using Clock = std::chrono::steady_clock;

struct Flags {
  std::string server;  // "" = in-process
  std::string dataset = "bench";
  int threads = 16;
  double seconds = 3;
  int submits = 5000;
  int shallow = 1000;
  int deep = 100000;
  int latency_samples = 2000;
  int acquire_samples = 500;
  std::string security = "plain";  // plain | tokens | tls | mtls
  std::string pki;                 // make_certs.sh output, for tls and mtls
  std::string token;               // the bearer token of a running qnetd (--server)
  int server_pid = 0;              // a running qnetd's process, for its CPU time per call
  bool serve_echo = false;         // run only the echo server
  std::string echo_server;         // measure only Echo against this --serve-echo process
};

// How the in-process qnetd is secured and how clients reach it (one per run).
struct Security {
  std::string mode = "plain";
  std::string pki;
  std::string bearer;  // "Bearer TOKEN" every call carries (tokens, tls)

  bool auth() const { return mode != "plain"; }
  bool tls() const { return mode == "tls" || mode == "mtls"; }
  std::string Pem(const std::string& name) const {
    std::ifstream in(pki + "/" + name, std::ios::binary);
    std::ostringstream text;
    text << in.rdbuf();
    if (!in || text.str().empty()) {
      std::fprintf(stderr, "cannot read %s/%s (make it with make_certs.sh %s)\n", pki.c_str(),
                   name.c_str(), pki.c_str());
      std::exit(2);
    }
    return text.str();
  }
};
Security g_security;

struct Stats {
  int64_t calls = 0;
  int64_t errors = 0;
  double seconds = 0;
  std::vector<double> latencies_ms;

  double rate() const { return seconds > 0 ? static_cast<double>(calls) / seconds : 0; }
  double Percentile(double p) {
    if (latencies_ms.empty()) return 0;
    std::sort(latencies_ms.begin(), latencies_ms.end());
    const size_t i =
        std::min(latencies_ms.size() - 1,
                 static_cast<size_t>(p / 100.0 * static_cast<double>(latencies_ms.size())));
    return latencies_ms[i];
  }
};

// One connection per client thread, so calls do not queue behind one HTTP/2 connection. A
// secured connection (qnetd, a --serve-echo process) uses --security's transport; the in-process
// echo baseline stays bare plaintext.
std::shared_ptr<grpc::Channel> Connect(const std::string& address, int index, bool secured = true) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  args.SetInt("qnet.loadgen.channel", index);
  std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::InsecureChannelCredentials();
  if (secured && g_security.tls()) {
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = g_security.Pem("ca.pem");
    if (g_security.mode == "mtls") {
      ssl.pem_private_key = g_security.Pem("alice.key");
      ssl.pem_cert_chain = g_security.Pem("alice.pem");
    }
    credentials = grpc::SslCredentials(ssl);
  }
  return grpc::CreateCustomChannel(address, credentials, args);
}

// The closed loop every phase uses: `threads` threads call `call(thread, i)` until `deadline`
// or until each made `max_calls_per_thread` calls; latencies of successful calls are kept.
Stats RunClosedLoop(int threads, double seconds, int64_t max_calls_per_thread,
                    const std::function<bool(int, int64_t)>& call) {
  std::vector<Stats> per_thread(threads);
  std::vector<std::thread> pool;
  const auto start = Clock::now();
  const auto deadline =
      start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      Stats& s = per_thread[t];
      for (int64_t i = 0; i < max_calls_per_thread && Clock::now() < deadline; ++i) {
        const auto t0 = Clock::now();
        const bool ok = call(t, i);
        const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
        if (ok) {
          ++s.calls;
          s.latencies_ms.push_back(ms);
        } else {
          ++s.errors;
        }
      }
    });
  }
  for (auto& th : pool) th.join();
  Stats total;
  total.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  for (Stats& s : per_thread) {
    total.calls += s.calls;
    total.errors += s.errors;
    total.latencies_ms.insert(total.latencies_ms.end(), s.latencies_ms.begin(),
                              s.latencies_ms.end());
  }
  return total;
}

// User plus system CPU seconds `pid` has used so far (from /proc; 0 when unreadable).
double CpuSeconds(int pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/stat"));
  std::string line;
  std::getline(in, line);
  // The fields after the parenthesised command name; utime and stime are fields 14 and 15.
  std::istringstream rest(line.substr(line.rfind(')') + 2));
  std::string field;
  double ticks = 0;
  for (int i = 3; i <= 15 && rest >> field; ++i) {
    if (i >= 14) ticks += std::stod(field);
  }
  return ticks / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

// The CPU a call cost the server: --server-pid's CPU seconds over a phase per call, in us.
struct ServerCpu {
  int pid = 0;
  double start = 0;
  void Begin() { start = pid > 0 ? CpuSeconds(pid) : 0; }
  double PerCallUs(int64_t calls) const {
    return pid > 0 && calls > 0 ? (CpuSeconds(pid) - start) * 1e6 / static_cast<double>(calls) : 0;
  }
};

std::unique_ptr<grpc::ClientContext> Ctx(bool qnetd = true) {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  if (qnetd && !g_security.bearer.empty()) ctx->AddMetadata("authorization", g_security.bearer);
  return ctx;
}

qnet::v1::JobSpec BenchSpec(const std::string& dataset) {
  qnet::v1::JobSpec spec;
  spec.set_model("zoo:lenet5");
  spec.set_dataset(dataset);
  spec.set_weight_bits(2);
  spec.set_activation_bits(2);
  spec.mutable_training()->set_epochs(2);
  return spec;
}

class EchoService final : public qnet::bench::Echo::Service {
  grpc::Status Echo(grpc::ServerContext*, const qnet::bench::EchoRequest* request,
                    qnet::bench::EchoResponse* response) override {
    response->set_payload(request->payload());
    return grpc::Status::OK;
  }
};

// The transport --serve-echo listens with: qnetd's TLS set-up for --security tls and mtls, with
// nothing else (no authentication); plaintext otherwise.
std::shared_ptr<grpc::ServerCredentials> EchoServerCredentials() {
  if (!g_security.tls()) return grpc::InsecureServerCredentials();
  const bool mtls = g_security.mode == "mtls";
  grpc::SslServerCredentialsOptions ssl(
      mtls ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
           : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  if (mtls) ssl.pem_root_certs = g_security.Pem("ca.pem");
  ssl.pem_key_cert_pairs.push_back({g_security.Pem("server.key"), g_security.Pem("server.pem")});
  return grpc::SslServerCredentials(ssl);
}

// --serve-echo: the echo server alone, its address on stdout, until SIGTERM or SIGINT.
int ServeEcho() {
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  // Blocked before gRPC starts its threads, so that every thread inherits the mask and sigwait
  // below is the one place the signal arrives.
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  EchoService service;
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", EchoServerCredentials(), &port);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) {
    std::fprintf(stderr, "cannot start the echo server\n");
    return 1;
  }
  std::printf("listening echo=127.0.0.1:%d\n", port);
  std::fflush(stdout);
  int signal = 0;
  sigwait(&stop_signals, &signal);
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  return 0;
}

void MakeFakeIdx(const std::string& dir) {
  std::filesystem::create_directories(dir);
  for (const char* name : {"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                           "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"}) {
    std::ofstream(dir + "/" + name) << "fake";
  }
}

std::unique_ptr<qnet::server::QnetServerImpl> StartServer(const std::string& root, int max_queued) {
  MakeFakeIdx(root + "/bench-dataset");
  qnet::server::QnetServerOptions o;
  o.listen = "127.0.0.1:0";
  o.http_listen = "127.0.0.1:0";
  o.data_dir = root + "/data";
  o.default_dataset_dir = "";
  o.datasets = {"bench=idx:" + root + "/bench-dataset"};
  o.max_queued = max_queued;
  // One identity makes every call here: per-identity quotas would refuse most of them.
  o.quota_queued_jobs = 0;
  o.quota_running_jobs = 0;
  o.quota_submits_per_minute = 0;
  if (g_security.auth()) {
    // One client identity: by token (tokens, tls) or by the certificate of CN alice (mtls).
    const std::string token = qnet::server::NewToken();
    std::ofstream(root + "/tokens")
        << (g_security.mode == "mtls" ? "alice client -\n"
                                      : "bench client " + qnet::server::TokenHash(token) + "\n");
    if (g_security.mode != "mtls") g_security.bearer = "Bearer " + token;
    o.auth_tokens_path = root + "/tokens";
    if (g_security.tls()) {
      o.tls_cert_path = g_security.pki + "/server.pem";
      o.tls_key_path = g_security.pki + "/server.key";
    }
    if (g_security.mode == "mtls") o.tls_client_ca_path = g_security.pki + "/ca.pem";
  }
  auto server = qnet::server::QnetServerImpl::Start(o);
  if (!server.ok()) {
    std::fprintf(stderr, "cannot start qnetd: %s\n",
                 std::string(server.status().message()).c_str());
    std::exit(1);
  }
  return *std::move(server);
}

// Writes `n` QUEUED jobs straight into a store (the way a long-running server accumulates them).
void Prefill(const std::string& data_dir, int n) {
  std::filesystem::create_directories(data_dir);
  auto store = qnet::server::SqliteJobStore::Open(data_dir + "/jobs.db");
  if (!store.ok()) std::exit(1);
  std::vector<qnet::server::StoreWrite> writes;
  writes.reserve(n);
  for (int i = 1; i <= n; ++i) {
    qnet::server::JobRecord r;
    r.seq = i;
    r.job.set_id(absl::StrFormat("j-prefill%08d", i));
    *r.job.mutable_spec() = BenchSpec("bench");
    r.job.mutable_spec()->set_priority(i % 4);
    r.job.set_state(qnet::v1::QUEUED);
    r.job.set_attempt(1);
    writes.push_back((*store)->Create(r));
  }
  for (auto& w : writes) {
    if (!w.Wait().ok()) std::exit(1);
  }
}

struct DepthResult {
  int depth = 0;
  double recover_s = 0;
  Stats get;
  Stats acquire;
};

// One in-process qnetd over a store prefilled with `depth` queued jobs.
struct DepthServer {
  std::string root;
  std::unique_ptr<qnet::server::QnetServerImpl> server;
  std::unique_ptr<qnet::v1::JobService::Stub> jobs;
  std::unique_ptr<qnet::v1::WorkerService::Stub> workers;
  DepthResult result;
};

std::unique_ptr<DepthServer> StartAtDepth(const Flags& flags, int depth) {
  auto d = std::make_unique<DepthServer>();
  d->root = (std::filesystem::temp_directory_path() /
             absl::StrCat("qnet-loadgen-depth-", depth, "-", ::getpid()))
                .string();
  std::filesystem::remove_all(d->root);
  // Enough queued jobs that every AcquireLease below still finds one.
  Prefill(d->root + "/data", depth + flags.acquire_samples);
  const auto t0 = Clock::now();
  d->server = StartServer(d->root, 10 * (depth + flags.acquire_samples));
  d->result.depth = depth;
  d->result.recover_s = std::chrono::duration<double>(Clock::now() - t0).count();
  auto channel = Connect(d->server->grpc_address(), 0);
  d->jobs = qnet::v1::JobService::NewStub(channel);
  d->workers = qnet::v1::WorkerService::NewStub(channel);
  return d;
}

double TimeMs(const std::function<bool()>& call, bool* ok) {
  const auto t0 = Clock::now();
  *ok = call();
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

// Latency at two queue depths, calls interleaved (shallow, deep, deep, shallow, ...) so that
// noise from other processes on the machine hits both alike.
std::vector<DepthResult> MeasureDepths(const Flags& flags) {
  std::vector<std::unique_ptr<DepthServer>> servers;
  servers.push_back(StartAtDepth(flags, flags.shallow));
  servers.push_back(StartAtDepth(flags, flags.deep));
  std::mt19937 rng(7);
  auto get = [&](DepthServer& d) {
    qnet::v1::GetJobRequest req;
    req.set_id(absl::StrFormat("j-prefill%08d", 1 + static_cast<int>(rng() % d.result.depth)));
    qnet::v1::Job job;
    return d.jobs->GetJob(Ctx().get(), req, &job).ok();
  };
  auto acquire = [&](DepthServer& d) {
    qnet::v1::AcquireLeaseRequest req;
    req.set_worker_id("loadgen");
    req.set_wait_seconds(0);
    qnet::v1::AcquireLeaseResponse resp;
    return d.workers->AcquireLease(Ctx().get(), req, &resp).ok() && resp.has_job();
  };
  for (int i = 0; i < 50; ++i) {  // warm up both connections
    for (auto& d : servers) get(*d);
  }
  auto measure = [&](int samples, auto& call, Stats DepthResult::*field) {
    for (int i = 0; i < samples; ++i) {
      for (int k = 0; k < 2; ++k) {
        DepthServer& d = *servers[(i + k) % 2];
        bool ok = false;
        const double ms = TimeMs([&] { return call(d); }, &ok);
        Stats& s = d.result.*field;
        if (ok) {
          ++s.calls;
          s.latencies_ms.push_back(ms);
        } else {
          ++s.errors;
        }
      }
    }
  };
  measure(flags.latency_samples, get, &DepthResult::get);
  measure(flags.acquire_samples, acquire, &DepthResult::acquire);
  std::vector<DepthResult> results;
  for (auto& d : servers) {
    d->server->Shutdown(absl::Seconds(2));
    d->server.reset();
    std::filesystem::remove_all(d->root);
    results.push_back(std::move(d->result));
  }
  return results;
}

// --echo-server: Echo alone against a --serve-echo process, with a payload the size of a queued
// job's GetJob answer; with --server-pid, that process's CPU per call.
int MeasureEcho(const Flags& flags) {
  std::vector<std::unique_ptr<qnet::bench::Echo::Stub>> stubs;
  for (int t = 0; t < flags.threads; ++t) {
    stubs.push_back(qnet::bench::Echo::NewStub(Connect(flags.echo_server, t)));
  }
  qnet::v1::Job job;
  job.set_id("0123456789abcdef0123456789abcdef");
  *job.mutable_spec() = BenchSpec(flags.dataset);
  job.set_state(qnet::v1::QUEUED);
  job.set_request_id("loadgen-12345-1700000000000000000-0-0");
  job.mutable_create_time()->set_seconds(1700000000);
  job.mutable_create_time()->set_nanos(123456789);
  const std::string payload = job.SerializeAsString();
  ServerCpu server_cpu{flags.server_pid};
  server_cpu.Begin();
  Stats echo = RunClosedLoop(flags.threads, flags.seconds, INT64_MAX, [&](int t, int64_t) {
    qnet::bench::EchoRequest req;
    req.set_payload(payload);
    qnet::bench::EchoResponse resp;
    return stubs[t]->Echo(Ctx(/*qnetd=*/false).get(), req, &resp).ok();
  });
  const double cpu_us = server_cpu.PerCallUs(echo.calls);
  std::printf("%-44s %12s %10s %10s %10s %8s\n", "measurement", "rate (/s)", "p50 ms", "p99 ms",
              "max ms", "errors");
  std::printf("%-44s %12.0f %10.3f %10.3f %10.3f %8lld\n",
              absl::StrCat("Echo (", flags.security, ", ", payload.size(), " bytes)").c_str(),
              echo.rate(), echo.Percentile(50), echo.Percentile(99), echo.Percentile(100),
              static_cast<long long>(echo.errors));
  if (flags.server_pid > 0) {
    std::printf("echo server CPU per call    %8.1f us Echo\n", cpu_us);
  }
  return echo.errors == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  Flags flags;
  CLI::App app{"qnet_loadgen: throughput and latency of qnetd on loopback"};
  app.add_option("--server", flags.server, "measure a running qnetd (default: in-process)");
  app.add_option("--dataset", flags.dataset, "dataset name for submitted jobs")
      ->capture_default_str();
  app.add_option("--threads", flags.threads, "concurrent client threads")->capture_default_str();
  app.add_option("--seconds", flags.seconds, "length of each throughput phase")
      ->capture_default_str();
  app.add_option("--submits", flags.submits, "jobs submitted in the SubmitJob phase")
      ->capture_default_str();
  app.add_option("--shallow", flags.shallow, "queue depth of the small-queue latency run")
      ->capture_default_str();
  app.add_option("--deep", flags.deep, "queue depth of the large-queue latency run (0 = skip)")
      ->capture_default_str();
  app.add_option("--security", flags.security,
                 "qnetd: plain (no auth), tokens (a token, no TLS), tls (TLS and a "
                 "token) or mtls (TLS and a client certificate); all but plain skip the "
                 "queue-depth phase")
      ->check(CLI::IsMember({"plain", "tokens", "tls", "mtls"}))
      ->capture_default_str();
  app.add_option("--pki", flags.pki,
                 "folder of tests/server/auth/make_certs.sh output (for --security tls, mtls)");
  app.add_option("--token", flags.token,
                 "with --server and --security tokens or tls: the bearer token of a client "
                 "identity of that qnetd");
  app.add_option("--server-pid", flags.server_pid,
                 "with --server or --echo-server: its process id, to report its CPU time per "
                 "call");
  app.add_flag("--serve-echo", flags.serve_echo,
               "run only the bare echo server, with --security's transport and no "
               "authentication, until SIGTERM; prints its address");
  // An empty address would otherwise fall through to the in-process run and measure the wrong
  // server without a word.
  app.add_option("--echo-server", flags.echo_server,
                 "measure only Echo against a --serve-echo process at this address")
      ->check([](const std::string& address) {
        return address.empty() ? std::string("needs an address (HOST:PORT)") : std::string();
      });
  CLI11_PARSE(app, argc, argv);
  // As qnetd does (server/qnetd_main.cc): no deadlock-cycle check on every lock.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  g_security.mode = flags.security;
  g_security.pki = flags.pki;
  if (g_security.tls() && flags.pki.empty()) {
    std::fprintf(stderr, "--security %s needs --pki\n", flags.security.c_str());
    return 2;
  }
  if (g_security.auth() && !flags.server.empty() && g_security.mode != "mtls") {
    if (flags.token.empty()) {
      std::fprintf(stderr, "--server with --security %s needs --token\n", flags.security.c_str());
      return 2;
    }
    g_security.bearer = "Bearer " + flags.token;
  }
  if (g_security.auth()) flags.deep = 0;  // the depth phase's worker calls need a worker identity
  spdlog::set_level(spdlog::level::warn);
  if (flags.serve_echo) return ServeEcho();
  if (!flags.echo_server.empty()) return MeasureEcho(flags);

  std::string root;
  std::unique_ptr<qnet::server::QnetServerImpl> server;
  std::string address = flags.server;
  if (address.empty()) {
    root = (std::filesystem::temp_directory_path() / absl::StrCat("qnet-loadgen-", ::getpid()))
               .string();
    std::filesystem::remove_all(root);
    server = StartServer(root, 10 * flags.submits + 1000);
    address = server->grpc_address();
    flags.dataset = "bench";
  }

  // The bare echo server, built like qnetd's (sync API) but with nothing else on it.
  EchoService echo_service;
  grpc::ServerBuilder echo_builder;
  int echo_port = 0;
  echo_builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &echo_port);
  echo_builder.RegisterService(&echo_service);
  std::unique_ptr<grpc::Server> echo_server = echo_builder.BuildAndStart();
  const std::string echo_address = absl::StrCat("127.0.0.1:", echo_port);

  std::vector<std::unique_ptr<qnet::v1::JobService::Stub>> job_stubs;
  std::vector<std::unique_ptr<qnet::bench::Echo::Stub>> echo_stubs;
  for (int t = 0; t < flags.threads; ++t) {
    job_stubs.push_back(qnet::v1::JobService::NewStub(Connect(address, t)));
    echo_stubs.push_back(qnet::bench::Echo::NewStub(Connect(echo_address, t, /*qnetd=*/false)));
  }

  // 1. Durable submits.
  const int64_t per_thread = (flags.submits + flags.threads - 1) / flags.threads;
  std::vector<std::vector<std::string>> ids(flags.threads);
  const int64_t commits_before = server ? server->store().commits() : 0;
  const std::string run = absl::StrCat(::getpid(), "-", Clock::now().time_since_epoch().count());
  ServerCpu server_cpu{flags.server_pid};
  server_cpu.Begin();
  Stats submit = RunClosedLoop(flags.threads, 600, per_thread, [&](int t, int64_t i) {
    qnet::v1::SubmitJobRequest req;
    *req.mutable_spec() = BenchSpec(flags.dataset);
    req.set_request_id(absl::StrCat("loadgen-", run, "-", t, "-", i));
    qnet::v1::Job job;
    grpc::Status s = job_stubs[t]->SubmitJob(Ctx().get(), req, &job);
    if (!s.ok()) {
      std::fprintf(stderr, "SubmitJob: %s\n", s.error_message().c_str());
      return false;
    }
    ids[t].push_back(job.id());
    return true;
  });
  const int64_t commits = server ? server->store().commits() - commits_before : 0;
  const double submit_cpu_us = server_cpu.PerCallUs(submit.calls);
  std::vector<std::string> all_ids;
  for (auto& v : ids) all_ids.insert(all_ids.end(), v.begin(), v.end());
  if (all_ids.empty()) {
    std::fprintf(stderr, "no job was submitted\n");
    return 1;
  }

  // 2. GetJob against Echo: identical closed loops, payload of a similar size.
  std::string sample_bytes;
  {
    qnet::v1::GetJobRequest req;
    req.set_id(all_ids[0]);
    qnet::v1::Job job;
    job_stubs[0]->GetJob(Ctx().get(), req, &job);
    job.SerializeToString(&sample_bytes);
  }
  std::vector<std::mt19937> rngs;
  for (int t = 0; t < flags.threads; ++t) rngs.emplace_back(100 + t);
  server_cpu.Begin();
  Stats get = RunClosedLoop(flags.threads, flags.seconds, INT64_MAX, [&](int t, int64_t) {
    qnet::v1::GetJobRequest req;
    req.set_id(all_ids[rngs[t]() % all_ids.size()]);
    qnet::v1::Job job;
    return job_stubs[t]->GetJob(Ctx().get(), req, &job).ok();
  });
  const double get_cpu_us = server_cpu.PerCallUs(get.calls);
  Stats echo = RunClosedLoop(flags.threads, flags.seconds, INT64_MAX, [&](int t, int64_t) {
    qnet::bench::EchoRequest req;
    req.set_payload(sample_bytes);
    qnet::bench::EchoResponse resp;
    return echo_stubs[t]->Echo(Ctx(/*qnetd=*/false).get(), req, &resp).ok();
  });

  // 3. Latency against queue depth (in-process only: it needs fresh servers).
  std::vector<DepthResult> depths;
  if (flags.server.empty() && flags.deep > 0) {
    job_stubs.clear();
    server->Shutdown(absl::Seconds(2));
    server.reset();
    depths = MeasureDepths(flags);
  }
  echo_server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));

  std::printf("\nqnet_loadgen: %d client threads, %u hardware threads, server %s, security %s\n\n",
              flags.threads, std::thread::hardware_concurrency(),
              flags.server.empty() ? "in-process" : flags.server.c_str(), flags.security.c_str());
  std::printf("%-44s %12s %10s %10s %10s %8s\n", "measurement", "rate (/s)", "p50 ms", "p99 ms",
              "max ms", "errors");
  auto row = [](const std::string& name, Stats& s, bool with_rate = true) {
    std::printf("%-44s %12s %10.3f %10.3f %10.3f %8lld\n", name.c_str(),
                with_rate ? absl::StrFormat("%.0f", s.rate()).c_str() : "-", s.Percentile(50),
                s.Percentile(99), s.Percentile(100), static_cast<long long>(s.errors));
  };
  row(absl::StrCat("SubmitJob, durable (", submit.calls, " jobs)"), submit);
  row("GetJob", get);
  row("Echo (bare gRPC baseline)", echo);
  for (DepthResult& d : depths) {
    row(absl::StrCat("GetJob, 1 client, ", d.depth, " queued"), d.get, false);
    row(absl::StrCat("AcquireLease, 1 client, ", d.depth, " queued"), d.acquire, false);
  }
  std::printf("\n");
  std::printf("SubmitJob throughput        %8.0f jobs/s   (target >= 1000)   %s\n", submit.rate(),
              submit.rate() >= 1000 ? "ok" : "MISSED");
  std::printf("SubmitJob p99               %8.2f ms       (target < 50)      %s\n",
              submit.Percentile(99), submit.Percentile(99) < 50 ? "ok" : "MISSED");
  if (commits > 0) {
    std::printf("group commit                %8.1f jobs per transaction (%lld commits)\n",
                static_cast<double>(submit.calls) / static_cast<double>(commits),
                static_cast<long long>(commits));
  }
  if (flags.server_pid > 0) {
    std::printf("qnetd CPU per call          %8.1f us SubmitJob, %.1f us GetJob\n", submit_cpu_us,
                get_cpu_us);
  }
  const double ratio = echo.rate() > 0 ? get.rate() / echo.rate() : 0;
  std::printf("GetJob / Echo throughput    %8.2f x      (target >= 0.5)    %s\n", ratio,
              ratio >= 0.5 ? "ok" : "MISSED");
  if (depths.size() == 2) {
    const double get_ratio = depths[1].get.Percentile(50) / depths[0].get.Percentile(50);
    const double acq_ratio = depths[1].acquire.Percentile(50) / depths[0].acquire.Percentile(50);
    const double get_p99 = depths[1].get.Percentile(99) / depths[0].get.Percentile(99);
    const double acq_p99 = depths[1].acquire.Percentile(99) / depths[0].acquire.Percentile(99);
    std::printf("GetJob p50/p99 at %d vs %d queued      %5.2f x / %5.2f x (target <= 1.5) %s\n",
                depths[1].depth, depths[0].depth, get_ratio, get_p99,
                get_ratio <= 1.5 ? "ok" : "MISSED");
    std::printf("AcquireLease p50/p99 at %d vs %d queued %5.2f x / %5.2f x (target <= 1.5) %s\n",
                depths[1].depth, depths[0].depth, acq_ratio, acq_p99,
                acq_ratio <= 1.5 ? "ok" : "MISSED");
    std::printf(
        "startup with %d / %d queued jobs     %.2f s / %.2f s (queue rebuilt from the store)\n",
        depths[0].depth, depths[1].depth, depths[0].recover_s, depths[1].recover_s);
  }
  if (!root.empty()) std::filesystem::remove_all(root);
  return 0;
}
