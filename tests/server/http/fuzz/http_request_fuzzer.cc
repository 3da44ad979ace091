// Fuzz target: whole HTTP requests, as a client's bytes reach qnetd: a real HttpServer with the
// WebApi routes (over a scheduler with a few jobs) on 127.0.0.1, fed each input through a TCP
// connection whose sending side is then shut. Boost.Beast parses the request; qnetd's policy
// (methods, Host, bodies, header size), the request target and the routes' query handling
// (state, page_size, page_token) do the rest. Every input must get a well-formed HTTP answer or
// none (a request cut short), never a 500 or a hang, and the server must keep serving.
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "server/auth/authenticator.h"
#include "server/http/http_server.h"
#include "server/http/web_api.h"
#include "server/metrics/metrics_registry.h"
#include "server/scheduling/scheduler.h"
#include "server/store/sqlite_job_store.h"
#include "tests/server/test_util.h"

namespace {

using namespace qnet::server;

// qnetd's HTTP side, started once per process.
struct Server {
  testing::TempDir dir;
  testing::FakeClock clock;
  MetricsRegistry metrics{"0.0.0-fuzz"};
  std::unique_ptr<SqliteJobStore> store;
  std::unique_ptr<Scheduler> scheduler;
  // Open mode, as qnetd on loopback without --auth-tokens: every route is reachable.
  std::unique_ptr<Authenticator> auth = Authenticator::Open();
  std::unique_ptr<WebApi> api;
  std::unique_ptr<HttpServer> http;

  Server() {
    store = SqliteJobStore::Open(dir / "jobs.db").value();
    scheduler = std::make_unique<Scheduler>(store.get(), &clock, SchedulerOptions{}, &metrics);
    if (!scheduler->Recover().ok()) std::abort();
    for (const char* model : {"zoo:lenet5", "zoo:resnet20", "zoo:lenet5"}) {
      qnet::v1::JobSpec spec;
      spec.set_model(model);
      spec.set_dataset("fashion-mnist");
      if (!scheduler->Submit(spec, "").ok()) std::abort();
    }
    api = std::make_unique<WebApi>(
        scheduler.get(), &metrics, auth.get(), [] { return absl::OkStatus(); },
        "/nonexistent/chart.js", "0.0.0-fuzz");
    HttpServerOptions options;
    options.read_timeout = absl::Seconds(2);
    http = HttpServer::Start(
               "127.0.0.1:0", [this](const HttpRequest& r) { return api->Handle(r); }, options)
               .value();
  }
};

// The status of the first response in `answer`; 0 when there is none.
int FirstStatus(const std::string& answer) {
  if (answer.empty()) return 0;
  int status = 0;
  if (!absl::StartsWith(answer, "HTTP/1.") || answer.size() < 12 || answer[8] != ' ' ||
      !absl::SimpleAtoi(answer.substr(9, 3), &status) || status < 100) {
    std::abort();  // not an HTTP response
  }
  return status;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Server* const server = new Server;  // kept to the end: its threads serve until exit
  // This side shuts its sending side first, so each connection it closes stays in TIME_WAIT for
  // a minute; from one source address the ~28,000 ephemeral ports run out within that minute at
  // the rate libFuzzer runs inputs (connect then fails with EADDRNOTAVAIL), so the source address
  // rotates over 127.0.0.1 to 127.0.0.254.
  static uint32_t connections = 0;
  const std::string source = absl::StrCat("127.0.0.", 1 + connections++ % 254);
  const int fd = testing::ConnectTcp(server->http->address(), source);
  if (fd < 0) {  // the server stopped accepting, or this machine ran out of something to connect
    std::fprintf(stderr, "cannot connect to %s from %s: %s\n", server->http->address().c_str(),
                 source.c_str(), std::strerror(errno));
    std::abort();
  }
  for (size_t sent = 0; sent < size;) {
    const ssize_t n = ::send(fd, data + sent, size - sent, MSG_NOSIGNAL);
    if (n <= 0) break;  // the server answered and closed before reading everything
    sent += static_cast<size_t>(n);
  }
  ::shutdown(fd, SHUT_WR);
  std::string answer;
  char buf[16384];
  ssize_t n;
  while ((n = ::recv(fd, buf, sizeof buf, 0)) > 0) answer.append(buf, static_cast<size_t>(n));
  const bool timed_out = n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
  ::close(fd);
  if (timed_out) std::abort();  // ConnectTcp's 10 s: the server neither answered nor closed
  if (FirstStatus(answer) >= 500 && FirstStatus(answer) != 503) std::abort();
  return 0;
}
