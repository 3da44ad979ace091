// The pieces the load and fault tests share: a real qnetd child process that can be killed and
// restarted on the same data folder and gRPC address, identities in a tokens file, calls that
// carry a bearer token and wait out a restart, tiny blob uploads, and /proc samples of qnetd's
// memory and descriptors.
//
//   QnetdProcess qnetd(QNETD_PATH, {"--data-dir", dir, "--auth-tokens", tokens}, dir +
//   "/qnetd.log"); if (absl::Status s = qnetd.Start(); !s.ok()) ...;   // parses "listening
//   grpc=HOST:PORT ..." qnetd.Stop(SIGKILL); qnetd.Start(qnetd.grpc_address());                  //
//   same port: channels reconnect absl::StatusOr<ProcSample> s = SampleProc(qnetd.pid());
#ifndef QNET_TESTS_LOAD_QNETD_PROCESS_H_
#define QNET_TESTS_LOAD_QNETD_PROCESS_H_

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <grpcpp/channel.h>
#include <grpcpp/client_context.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "qnet/v1/blob.grpc.pb.h"

namespace qnet::load {

class QnetdProcess {
 public:
  // `args` follow --listen and --http-listen; qnetd's stderr is appended to `log_path`.
  // `wrapper`: a command that runs qnetd (e.g. setpriv to run it as another user).
  QnetdProcess(std::string binary, std::vector<std::string> args, std::string log_path,
               std::vector<std::string> wrapper = {});
  ~QnetdProcess();  // SIGKILL when still running
  QnetdProcess(const QnetdProcess&) = delete;
  QnetdProcess& operator=(const QnetdProcess&) = delete;

  // Starts qnetd on `listen` and returns once it printed its listening line. When it exits
  // instead, FAILED_PRECONDITION with its exit code and log tail (exit_code() keeps the code).
  absl::Status Start(const std::string& listen = "127.0.0.1:0",
                     absl::Duration timeout = absl::Seconds(60));
  // Sends `sig` and waits for the exit; returns the exit code (128 + signal when killed by one).
  absl::StatusOr<int> Stop(int sig, absl::Duration timeout = absl::Seconds(30));

  pid_t pid() const { return pid_.load(); }  // 0 when not running
  const std::string& grpc_address() const { return grpc_address_; }
  int exit_code() const { return exit_code_; }
  std::string LogTail(size_t bytes = 2000) const;

 private:
  // Reaps the child when it has exited (or waits up to `timeout` for it); true once reaped.
  bool Reap(absl::Duration timeout);

  const std::string binary_;
  const std::vector<std::string> args_;
  const std::string log_path_;
  const std::vector<std::string> wrapper_;
  std::atomic<pid_t> pid_{0};
  int stdout_fd_ = -1;
  int exit_code_ = -1;
  std::string grpc_address_;
};

// Resident memory, open descriptors and threads of a process, from /proc.
struct ProcSample {
  int64_t rss_bytes = 0;
  int open_fds = 0;
  int threads = 0;
};
absl::StatusOr<ProcSample> SampleProc(pid_t pid);

struct TestIdentity {
  std::string name;
  std::string role;  // client, worker, admin
  std::string token;
};
// A new identity with a fresh token.
TestIdentity NewIdentity(std::string name, std::string role);
// Writes qnetd's --auth-tokens file (hashes only).
absl::Status WriteTokensFile(const std::string& path, const std::vector<TestIdentity>& ids);

// One connection per caller (no shared subchannel), reconnecting quickly after a restart.
std::shared_ptr<grpc::Channel> Connect(const std::string& address);
// Bearer token and deadline; wait_for_ready makes a call issued while qnetd restarts wait for the
// connection instead of failing at once.
void PrepareContext(grpc::ClientContext& ctx, const std::string& token, absl::Duration timeout,
                    bool wait_for_ready = true);
// Whether a call that failed with `code` may have failed only because qnetd went away.
bool IsTransient(grpc::StatusCode code);

// Uploads `data` in one message (workers: for `job_id`); the digest the server reports.
absl::StatusOr<std::string> UploadBlob(qnet::v1::BlobService::Stub& blobs, const std::string& token,
                                       const std::string& data, const std::string& kind,
                                       const std::string& job_id = "");
// A download's outcome: the call's status and every byte that arrived, also before an error.
struct Download {
  absl::Status status;
  std::string data;
};
Download DownloadBlob(qnet::v1::BlobService::Stub& blobs, const std::string& token,
                      const std::string& digest, int64_t offset = 0);

absl::Status ToStatus(const grpc::Status& s);

}  // namespace qnet::load

#endif  // QNET_TESTS_LOAD_QNETD_PROCESS_H_
