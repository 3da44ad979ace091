// Helpers shared by the qnetd tests: condition waits, a temp folder that cleans up after itself,
// a fake clock, a tiny hand-built ZIP writer (to make TorchScript-shaped archives without
// PyTorch), a fake IDX dataset folder, and a minimal blocking HTTP client (raw requests too).
//
//   TempDir dir;                                   // removed at scope end
//   ASSERT_TRUE(WaitFor([&] { return server.ready(); }));  // polls, up to 10 s
//   FakeClock clock;  clock.Advance(absl::Seconds(31));
//   std::string zip = MakeZip({{"model/data.pkl", "x"}, {"model/code/m.py", "y"}});
//   HttpResult r = HttpGet("127.0.0.1:8080", "/healthz");  // r.status == 200, r.body == "ok\n"
#ifndef QNET_TESTS_SERVER_TEST_UTIL_H_
#define QNET_TESTS_SERVER_TEST_UTIL_H_

#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "server/scheduling/clock.h"

namespace qnet::server::testing {

// Polls `done` until it holds or `timeout` passes; returns whether it held. Tests wait on
// conditions this way, never on fixed sleeps.
template <typename Pred>
bool WaitFor(Pred done, absl::Duration timeout = absl::Seconds(10)) {
  const absl::Time deadline = absl::Now() + timeout;
  while (!done()) {
    if (absl::Now() >= deadline) return false;
    absl::SleepFor(absl::Milliseconds(2));
  }
  return true;
}

class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

class FakeClock final : public Clock {
 public:
  explicit FakeClock(absl::Time start = absl::FromUnixSeconds(1800000000)) : now_(start) {}
  absl::Time Now() const override {
    std::lock_guard<std::mutex> lock(mu_);
    return now_;
  }
  void Advance(absl::Duration d) {
    std::lock_guard<std::mutex> lock(mu_);
    now_ += d;
  }

 private:
  mutable std::mutex mu_;
  absl::Time now_;
};

void WriteFile(const std::string& path, const std::string& content);
std::string ReadFile(const std::string& path);
int CountFiles(const std::string& dir);

// A ZIP archive of stored (uncompressed) entries.
std::string MakeZip(const std::vector<std::pair<std::string, std::string>>& entries);
// The shape of a torch.jit.save archive: enough for the server's structural check.
std::string MakeTorchScriptZip();

// Writes the four Fashion-MNIST-named IDX files (tiny, fake content) into `dir`.
void MakeFakeIdxDataset(const std::string& dir);

struct HttpResult {
  int status = 0;  // 0: could not connect or parse
  std::string content_type;
  std::string body;
  std::map<std::string, std::string> headers;  // names lower-case
};
HttpResult HttpGet(const std::string& host_port, const std::string& path);
// Sends `request` as is and reads the answer until the server closes the connection.
HttpResult HttpExchange(const std::string& host_port, const std::string& request);
// A connected IPv4 TCP socket (10 s receive timeout), from `source_ip` when given (any
// 127.0.0.0/8 address works on loopback); -1 on failure.
int ConnectTcp(const std::string& host_port, const std::string& source_ip = "");

}  // namespace qnet::server::testing

#endif  // QNET_TESTS_SERVER_TEST_UTIL_H_
