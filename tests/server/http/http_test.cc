// HttpServer + WebApi: /healthz, /metrics (checked with promtool when installed), the REST
// endpoints and the dashboard, over a real socket on 127.0.0.1.
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <thread>

#include "absl/strings/escaping.h"
#include "common/digest.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "server/http/http_server.h"
#include "server/http/web_api.h"
#include "server/store/sqlite_job_store.h"
#include "tests/server/test_util.h"

namespace qnet::server {
namespace {

using ::testing::HasSubstr;
using testing::HttpGet;
using testing::TempDir;

class HttpTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto store = SqliteJobStore::Open(dir_ / "jobs.db");
    ASSERT_TRUE(store.ok());
    store_ = *std::move(store);
    scheduler_ = std::make_unique<Scheduler>(store_.get(), &clock_, SchedulerOptions{}, &metrics_);
    ASSERT_TRUE(scheduler_->Recover().ok());
    metrics_.SetCollectHook([this] {
      SchedulerStats stats = scheduler_->Stats();
      metrics_.SetJobCounts(stats.jobs);
      metrics_.SetWorkers(stats.workers_busy, stats.workers_idle);
    });
    api_ = std::make_unique<WebApi>(
        scheduler_.get(), &metrics_, auth_.get(),
        [this] { return serving_ ? absl::OkStatus() : absl::UnavailableError("draining"); },
        "/usr/share/javascript/chart.js/chart.min.js", "9.9.9");
    auto http =
        HttpServer::Start("127.0.0.1:0", [this](const HttpRequest& r) { return api_->Handle(r); });
    ASSERT_TRUE(http.ok()) << http.status();
    http_ = *std::move(http);
    addr_ = http_->address();
  }

  std::string Submit() {
    qnet::v1::JobSpec spec;
    spec.set_model("zoo:lenet5");
    spec.set_dataset("fashion-mnist");
    spec.set_weight_bits(2);
    auto job = scheduler_->Submit(spec, "");
    EXPECT_TRUE(job.ok());
    return job->id();
  }

  TempDir dir_;
  testing::FakeClock clock_;
  MetricsRegistry metrics_{"9.9.9"};
  std::unique_ptr<Authenticator> auth_ = Authenticator::Open();
  std::unique_ptr<SqliteJobStore> store_;
  std::unique_ptr<Scheduler> scheduler_;
  std::atomic<bool> serving_{true};
  std::unique_ptr<WebApi> api_;
  std::unique_ptr<HttpServer> http_;
  std::string addr_;
};

TEST_F(HttpTest, HealthzFollowsServingState) {
  EXPECT_THAT(addr_, ::testing::StartsWith("127.0.0.1:"));
  testing::HttpResult ok = HttpGet(addr_, "/healthz");
  EXPECT_EQ(ok.status, 200);
  EXPECT_EQ(ok.body, "ok\n");
  serving_ = false;
  testing::HttpResult draining = HttpGet(addr_, "/healthz");
  EXPECT_EQ(draining.status, 503);
  EXPECT_EQ(draining.body, "draining\n");
}

TEST_F(HttpTest, MetricsInPrometheusTextFormat) {
  Submit();
  Submit();
  metrics_.GrpcRequest("/qnet.v1.JobService/GetJob", 5, absl::Milliseconds(2));
  metrics_.BlobBytes(MetricsRegistry::BlobDirection::kUpload, 1024);
  testing::HttpResult r = HttpGet(addr_, "/metrics");
  ASSERT_EQ(r.status, 200);
  EXPECT_THAT(r.content_type, HasSubstr("text/plain; version=0.0.4"));
  for (const char* want : {
           "# TYPE qnet_jobs_submitted_total counter",
           "qnet_jobs_submitted_total 2",
           "qnet_jobs{state=\"queued\"} 2",
           "qnet_jobs_finished_total{outcome=\"succeeded\"} 0",
           "# TYPE qnet_queue_wait_seconds histogram",
           "# TYPE qnet_job_duration_seconds histogram",
           "qnet_lease_expirations_total 0",
           "qnet_workers{state=\"busy\"} 0",
           "qnet_grpc_requests_total{code=\"NOT_FOUND\",method=\"qnet.v1.JobService/GetJob\"} 1",
           "qnet_grpc_request_duration_seconds_count{method=\"qnet.v1.JobService/GetJob\"} 1",
           "qnet_blob_bytes_total{direction=\"upload\"} 1024",
           "qnet_build_info{version=\"9.9.9\"} 1",
       }) {
    EXPECT_THAT(r.body, HasSubstr(want));
  }
  EXPECT_THAT(r.body, ::testing::Not(HasSubstr("j-")));  // no job ids as labels
#ifdef QNET_PROMTOOL
  testing::WriteFile(dir_ / "metrics.txt", r.body);
  const std::string cmd =
      std::string(QNET_PROMTOOL) + " check metrics < " + (dir_ / "metrics.txt") + " 2>&1";
  FILE* p = ::popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string out;
  char buf[512];
  while (fgets(buf, sizeof buf, p) != nullptr) out += buf;
  EXPECT_EQ(::pclose(p), 0) << "promtool check metrics: " << out;
#endif
}

TEST_F(HttpTest, JobsAsJson) {
  const std::string a = Submit();
  const std::string b = Submit();
  testing::HttpResult list = HttpGet(addr_, "/api/v1/jobs?page_size=1");
  ASSERT_EQ(list.status, 200);
  EXPECT_EQ(list.content_type, "application/json");
  nlohmann::json page = nlohmann::json::parse(list.body);
  ASSERT_EQ(page["jobs"].size(), 1u);
  EXPECT_EQ(page["jobs"][0]["id"], b);  // newest first
  EXPECT_EQ(page["jobs"][0]["state"], "QUEUED");
  EXPECT_EQ(page["jobs"][0]["spec"]["weight_bits"], 2);
  EXPECT_EQ(page["jobs"][0]["cancel_requested"], false);  // every field printed
  const std::string token = page["next_page_token"];
  ASSERT_FALSE(token.empty());
  nlohmann::json next =
      nlohmann::json::parse(HttpGet(addr_, "/api/v1/jobs?page_size=1&page_token=" + token).body);
  EXPECT_EQ(next["jobs"][0]["id"], a);
  EXPECT_EQ(next["next_page_token"], "");

  nlohmann::json queued = nlohmann::json::parse(HttpGet(addr_, "/api/v1/jobs?state=queued").body);
  EXPECT_EQ(queued["jobs"].size(), 2u);
  EXPECT_EQ(HttpGet(addr_, "/api/v1/jobs?state=bogus").status, 400);
  EXPECT_EQ(HttpGet(addr_, "/api/v1/jobs?page_token=garbage").status, 400);

  testing::HttpResult one = HttpGet(addr_, "/api/v1/jobs/" + a);
  ASSERT_EQ(one.status, 200);
  EXPECT_EQ(nlohmann::json::parse(one.body)["id"], a);
  testing::HttpResult missing = HttpGet(addr_, "/api/v1/jobs/j-0000");
  EXPECT_EQ(missing.status, 404);
  EXPECT_THAT(missing.body, HasSubstr("not found"));

  nlohmann::json summary = nlohmann::json::parse(HttpGet(addr_, "/api/v1/summary").body);
  EXPECT_EQ(summary["jobs"]["queued"], 2);
  EXPECT_EQ(summary["version"], "9.9.9");
}

TEST_F(HttpTest, DashboardAndStatic) {
  testing::HttpResult page = HttpGet(addr_, "/");
  ASSERT_EQ(page.status, 200);
  EXPECT_THAT(page.content_type, HasSubstr("text/html"));
  EXPECT_THAT(page.body, HasSubstr("/static/chart.js"));
  EXPECT_THAT(page.body, HasSubstr("/api/v1/jobs"));
  testing::HttpResult chart = HttpGet(addr_, "/static/chart.js");
  if (std::FILE* f = std::fopen("/usr/share/javascript/chart.js/chart.min.js", "r")) {
    std::fclose(f);
    EXPECT_EQ(chart.status, 200);
    EXPECT_THAT(chart.body, HasSubstr("Chart.js"));
  }
  EXPECT_EQ(HttpGet(addr_, "/nope").status, 404);
}

TEST_F(HttpTest, ManyConcurrentClients) {
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 20; ++i) ok += HttpGet(addr_, "/healthz").status == 200;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok, 160);
  http_->Stop();
  http_->Stop();  // idempotent
  EXPECT_EQ(HttpGet(addr_, "/healthz").status, 0);
}

HttpResponse OkResponse() {
  HttpResponse r;
  r.body = "ok";
  return r;
}

// A raw request to this server with the given extra header lines.
std::string Raw(const std::string& request_line,
                const std::string& headers = "Host: 127.0.0.1\r\n") {
  return request_line + "\r\n" + headers + "Connection: close\r\n\r\n";
}

TEST_F(HttpTest, MalformedRequestsGet400AndNothingElse) {
  // The smuggled second request must not be answered: one 400, then the connection closes.
  testing::HttpResult smuggle = testing::HttpExchange(
      addr_,
      "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: xchunked\r\n\r\n"
      "GET /api/v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
  EXPECT_EQ(smuggle.status, 400);
  EXPECT_EQ(smuggle.body, "request bodies are not accepted\n");
  for (const std::string& request : {
           std::string("GARBAGE\r\n\r\n"),
           Raw("GET /healthz HTTP/1.1", "Host: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n"),
           Raw("GET /healthz HTTP/1.1", "Host: 127.0.0.1\r\nContent-Length: 5\r\n") + "hello",
           Raw("GET /healthz HTTP/1.1", ""),                                        // no Host
           Raw("GET /healthz HTTP/1.1", "Host: 127.0.0.1\r\nHost: 127.0.0.1\r\n"),  // two
           Raw("GET /healthz HTTP/1.1", "Host: 127.0.0.1\r\nBad Name: x\r\n"),
           Raw("GET /healthz HTTP/1.1", "Host: a b\r\n"),
           Raw("GET /%zz HTTP/1.1"),
           Raw("GET /a%00b HTTP/1.1"),
           Raw("GET http://127.0.0.1/healthz HTTP/1.1"),
           Raw("GET /healthz HTTP/2.0"),
       }) {
    testing::HttpResult r = testing::HttpExchange(addr_, request);
    EXPECT_EQ(r.status, 400) << request;
    EXPECT_EQ(r.headers["connection"], "close") << request;
  }
  // RFC 9112 5.2: an obs-fold may be replaced by spaces; it never starts a header of its own.
  EXPECT_EQ(testing::HttpExchange(addr_, Raw("GET /healthz HTTP/1.1",
                                             "Host: 127.0.0.1\r\nX-A: one\r\n Host: evil\r\n"))
                .status,
            200);
}

TEST_F(HttpTest, OversizedHeaderGets431) {
  testing::HttpResult r = testing::HttpExchange(
      addr_, Raw("GET /healthz HTTP/1.1",
                 "Host: 127.0.0.1\r\nX-Big: " + std::string(20000, 'a') + "\r\n"));
  EXPECT_EQ(r.status, 431);
}

TEST_F(HttpTest, WrongMethodGets405WithAllow) {
  testing::HttpResult r = testing::HttpExchange(addr_, Raw("DELETE /api/v1/jobs/j-1 HTTP/1.1"));
  EXPECT_EQ(r.status, 405);
  EXPECT_EQ(r.headers["allow"], "GET, HEAD");
  testing::HttpResult head = testing::HttpExchange(addr_, Raw("HEAD /healthz HTTP/1.1"));
  EXPECT_EQ(head.status, 200);
  EXPECT_EQ(head.body, "");
}

TEST_F(HttpTest, HostMustBeAllowedOrAnIpLiteral) {
  const std::string port = addr_.substr(addr_.rfind(':'));
  for (const std::string& host :
       std::vector<std::string>{"localhost" + port, "LocalHost", "127.0.0.1" + port, "[::1]" + port,
                                "10.1.2.3:8080", "127.0.0.1:"}) {
    EXPECT_EQ(
        testing::HttpExchange(addr_, Raw("GET /api/v1/jobs HTTP/1.1", "Host: " + host + "\r\n"))
            .status,
        200)
        << host;
  }
  // A name the server was not told about: a page on a rebound DNS name must not read the API.
  testing::HttpResult rebound = testing::HttpExchange(
      addr_, Raw("GET /api/v1/jobs HTTP/1.1", "Host: attacker.example" + port + "\r\n"));
  EXPECT_EQ(rebound.status, 421);
  EXPECT_THAT(rebound.body, HasSubstr("--http-allowed-hosts"));
  // HTTP/1.0 may leave Host out.
  EXPECT_EQ(testing::HttpExchange(addr_, "GET /healthz HTTP/1.0\r\n\r\n").status, 200);

  HttpServerOptions options;
  options.allowed_hosts = {"qnet.example.org"};
  auto named = HttpServer::Start(
      "127.0.0.1:0", [](const HttpRequest&) { return OkResponse(); }, options);
  ASSERT_TRUE(named.ok());
  const std::string named_addr = (*named)->address();
  EXPECT_EQ(
      testing::HttpExchange(named_addr, Raw("GET / HTTP/1.1", "Host: QNET.example.org\r\n")).status,
      200);
  EXPECT_EQ(testing::HttpExchange(named_addr, Raw("GET / HTTP/1.1", "Host: localhost\r\n")).status,
            421);
}

TEST_F(HttpTest, EveryResponseCarriesSecurityHeaders) {
  const std::vector<std::pair<std::string, int>> requests = {
      {Raw("GET /healthz HTTP/1.1"), 200},
      {Raw("GET /metrics HTTP/1.1"), 200},
      {Raw("GET /api/v1/jobs HTTP/1.1"), 200},
      {Raw("GET /api/v1/summary HTTP/1.1"), 200},
      {Raw("GET /api/v1/jobs/j-0000 HTTP/1.1"), 404},
      {Raw("GET /nope HTTP/1.1"), 404},
      {Raw("POST / HTTP/1.1"), 405},
      {Raw("GET / HTTP/1.1", "Host: evil.example\r\n"), 421},
      {"GARBAGE\r\n\r\n", 400},
      {Raw("GET / HTTP/1.1", "Host: 127.0.0.1\r\nX: " + std::string(9000, 'x') + "\r\n"), 431},
  };
  for (const auto& [request, status] : requests) {
    testing::HttpResult r = testing::HttpExchange(addr_, request);
    EXPECT_EQ(r.status, status) << request.substr(0, 40);
    EXPECT_EQ(r.headers["x-content-type-options"], "nosniff") << request.substr(0, 40);
    EXPECT_EQ(r.headers["content-security-policy"],
              "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
        << request.substr(0, 40);
    EXPECT_EQ(r.headers["cache-control"], "no-store") << request.substr(0, 40);
  }
  // The dashboard runs its own inline script and style (by hash) and Chart.js from here only.
  testing::HttpResult page = HttpGet(addr_, "/");
  const std::string csp = page.headers["content-security-policy"];
  EXPECT_THAT(csp, HasSubstr("default-src 'none'; script-src 'self' 'sha256-"));
  EXPECT_THAT(csp, HasSubstr("style-src 'sha256-"));
  EXPECT_THAT(csp, HasSubstr("connect-src 'self'"));
  EXPECT_THAT(csp, ::testing::Not(HasSubstr("unsafe")));
  // The hashes are those of the inline script and style as served, or the browser blocks them.
  for (const auto& [open, close] :
       {std::pair<std::string, std::string>{"<script>", "</script>"}, {"<style>", "</style>"}}) {
    const size_t begin = page.body.find(open) + open.size();
    const std::string digest =
        DigestOf(page.body.substr(begin, page.body.find(close, begin) - begin));
    EXPECT_THAT(csp, HasSubstr("'sha256-" +
                               absl::Base64Escape(absl::HexStringToBytes(digest.substr(7))) + "'"))
        << open;
  }
  EXPECT_EQ(page.headers["x-content-type-options"], "nosniff");
}

TEST_F(HttpTest, NotFoundDoesNotEchoThePath) {
  testing::HttpResult r = HttpGet(addr_, "/%3Cscript%3Ealert(1)%3C/script%3E");
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(r.body, "not found\n");
}

TEST_F(HttpTest, HandlerSeesHeadersAndClient) {
  HttpRequest seen;
  auto http = HttpServer::Start("127.0.0.1:0", [&](const HttpRequest& r) {
    seen = r;
    return OkResponse();
  });
  ASSERT_TRUE(http.ok());
  testing::HttpExchange(
      (*http)->address(),
      Raw("GET /x?a=1&b=two+words HTTP/1.1", "Host: 127.0.0.1\r\nAuthorization: Bearer t0k\r\n"));
  (*http)->Stop();
  EXPECT_EQ(seen.path, "/x");
  EXPECT_EQ(seen.query["b"], "two words");
  EXPECT_EQ(seen.client, "127.0.0.1");
  ASSERT_NE(seen.Header("authorization"), nullptr);
  EXPECT_EQ(*seen.Header("authorization"), "Bearer t0k");
  EXPECT_EQ(seen.Header("x-missing"), nullptr);
}

// Whether the server closed `fd` without answering (recv sees end of stream).
bool ClosedByServer(int fd) {
  char c;
  return ::recv(fd, &c, 1, 0) == 0;
}

TEST_F(HttpTest, ConnectionsAreCappedInTotalAndPerClient) {
  HttpServerOptions options;
  options.max_connections = 6;
  options.max_connections_per_client = 4;
  auto http = HttpServer::Start(
      "127.0.0.1:0", [](const HttpRequest&) { return OkResponse(); }, options);
  ASSERT_TRUE(http.ok());
  const std::string addr = (*http)->address();
  std::vector<int> idle;
  for (int i = 0; i < 4; ++i) idle.push_back(testing::ConnectTcp(addr, "127.0.0.2"));
  const int fifth = testing::ConnectTcp(addr, "127.0.0.2");
  EXPECT_TRUE(ClosedByServer(fifth));  // a fifth from one client is refused
  ::close(fifth);
  EXPECT_EQ(HttpGet(addr, "/").status, 200);  // other clients still get in
  for (int i = 0; i < 2; ++i) idle.push_back(testing::ConnectTcp(addr, "127.0.0.3"));
  // Six open: the total cap refuses everyone until one closes.
  EXPECT_TRUE(testing::WaitFor([&] { return HttpGet(addr, "/").status == 0; }));
  ::close(idle.back());
  idle.pop_back();
  EXPECT_TRUE(testing::WaitFor([&] { return HttpGet(addr, "/").status == 200; }));
  for (int fd : idle) ::close(fd);
}

TEST_F(HttpTest, IdleConnectionsTimeOut) {
  HttpServerOptions options;
  options.read_timeout = absl::Milliseconds(200);
  auto http = HttpServer::Start(
      "127.0.0.1:0", [](const HttpRequest&) { return OkResponse(); }, options);
  ASSERT_TRUE(http.ok());
  // Half a request header, then nothing: closed after the read timeout (the socket's own
  // receive timeout is 10 s, so a -1 here would mean the server kept it open).
  const int fd = testing::ConnectTcp((*http)->address());
  ASSERT_GE(fd, 0);
  const std::string partial = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n";
  ASSERT_EQ(::send(fd, partial.data(), partial.size(), MSG_NOSIGNAL),
            static_cast<ssize_t>(partial.size()));
  const absl::Time start = absl::Now();
  EXPECT_TRUE(ClosedByServer(fd));
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  ::close(fd);
}

// CPU seconds this process has used.
double CpuSeconds() {
  rusage usage{};
  ::getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
         static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
}

TEST_F(HttpTest, AcceptBacksOffWhileOutOfDescriptors) {
  rlimit saved{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &saved), 0);
  // Room for exactly one more descriptor: the client socket. Its connection then waits in the
  // backlog while every accept() fails with EMFILE.
  const int probe = ::dup(0);
  ASSERT_GE(probe, 0);
  ::close(probe);
  rlimit tight = saved;
  tight.rlim_cur = static_cast<rlim_t>(probe) + 1;
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &tight), 0);
  const int fd = testing::ConnectTcp(addr_);
  const double cpu_before = CpuSeconds();
  // An observation window, not a synchronisation: a spinning accept loop burns it all.
  absl::SleepFor(absl::Milliseconds(500));
  const double cpu_used = CpuSeconds() - cpu_before;
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &saved), 0);
  ASSERT_GE(fd, 0);
  EXPECT_LT(cpu_used, 0.1);
  // Descriptors are back: the waiting connection is served.
  const std::string request = Raw("GET /healthz HTTP/1.1");
  ASSERT_EQ(::send(fd, request.data(), request.size(), MSG_NOSIGNAL),
            static_cast<ssize_t>(request.size()));
  char buf[256];
  const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
  ASSERT_GT(n, 0);
  EXPECT_THAT(std::string(buf, static_cast<size_t>(n)), ::testing::StartsWith("HTTP/1.1 200"));
  ::close(fd);
}

}  // namespace
}  // namespace qnet::server
