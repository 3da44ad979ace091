#include "tests/load/qnetd_process.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/channel_arguments.h>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "server/auth/token_table.h"

namespace qnet::load {

QnetdProcess::QnetdProcess(std::string binary, std::vector<std::string> args, std::string log_path,
                           std::vector<std::string> wrapper)
    : binary_(std::move(binary)),
      args_(std::move(args)),
      log_path_(std::move(log_path)),
      wrapper_(std::move(wrapper)) {}

QnetdProcess::~QnetdProcess() {
  if (pid_ > 0) Stop(SIGKILL).IgnoreError();
}

absl::Status QnetdProcess::Start(const std::string& listen, absl::Duration timeout) {
  if (pid_ > 0) return absl::FailedPreconditionError("qnetd is already running");
  int out[2];
  if (::pipe2(out, O_CLOEXEC) != 0) return absl::InternalError("pipe2 failed");
  std::vector<std::string> args = wrapper_;
  for (const std::string& a : {binary_, std::string("--listen"), listen,
                               std::string("--http-listen"), std::string("127.0.0.1:0")}) {
    args.push_back(a);
  }
  args.insert(args.end(), args_.begin(), args_.end());
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  const pid_t child = ::fork();
  if (child < 0) return absl::InternalError(absl::StrCat("fork: ", std::strerror(errno)));
  if (child == 0) {
    ::dup2(out[1], STDOUT_FILENO);
    const int err = ::open(log_path_.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (err >= 0) ::dup2(err, STDERR_FILENO);
    ::execvp(argv[0], argv.data());
    ::_exit(127);
  }
  ::close(out[1]);
  stdout_fd_ = out[0];
  pid_ = child;
  exit_code_ = -1;

  // The first stdout line: "listening grpc=HOST:PORT http=HOST:PORT".
  std::string line;
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    pollfd p{stdout_fd_, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    char c;
    if (::read(stdout_fd_, &c, 1) != 1) break;  // qnetd closed stdout: it exited
    if (c == '\n') break;
    line += c;
  }
  const size_t g = line.find("grpc="), h = line.find(" http=");
  if (line.rfind("listening grpc=", 0) == 0 && h != std::string::npos) {
    grpc_address_ = line.substr(g + 5, h - g - 5);
    return absl::OkStatus();
  }
  if (Reap(absl::Seconds(10))) {
    return absl::FailedPreconditionError(
        absl::StrCat("qnetd exited with code ", exit_code_, " before serving: ", LogTail()));
  }
  Stop(SIGKILL).IgnoreError();
  return absl::DeadlineExceededError(absl::StrCat("qnetd printed no listening line within ",
                                                  absl::FormatDuration(timeout), ": ", LogTail()));
}

bool QnetdProcess::Reap(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    int status = 0;
    const pid_t r = ::waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      pid_ = 0;
      ::close(stdout_fd_);
      stdout_fd_ = -1;
      return true;
    }
    if (r < 0 || absl::Now() >= deadline) return false;
    // The child's exit closes its end of the stdout pipe: wait for that instead of spinning.
    pollfd p{stdout_fd_, POLLIN, 0};
    if (::poll(&p, 1, 20) > 0) {
      char drain[256];
      // Closed (or only hung up): the exit is imminent; a short pause instead of a spin.
      if (!(p.revents & POLLIN) || ::read(stdout_fd_, drain, sizeof drain) <= 0) {
        ::poll(nullptr, 0, 5);
      }
    }
  }
}

absl::StatusOr<int> QnetdProcess::Stop(int sig, absl::Duration timeout) {
  if (pid_ <= 0) return absl::FailedPreconditionError("qnetd is not running");
  ::kill(pid_, sig);
  if (!Reap(timeout)) {
    ::kill(pid_, SIGKILL);
    Reap(absl::Seconds(10));
    return absl::DeadlineExceededError(absl::StrCat("qnetd did not exit within ",
                                                    absl::FormatDuration(timeout), " of signal ",
                                                    sig, "; killed: ", LogTail()));
  }
  return exit_code_;
}

std::string QnetdProcess::LogTail(size_t bytes) const {
  std::ifstream in(log_path_);
  std::stringstream all;
  all << in.rdbuf();
  const std::string text = all.str();
  return text.size() <= bytes ? text : text.substr(text.size() - bytes);
}

absl::StatusOr<ProcSample> SampleProc(pid_t pid) {
  ProcSample sample;
  std::ifstream status(absl::StrCat("/proc/", pid, "/status"));
  if (!status) return absl::NotFoundError(absl::StrCat("no /proc/", pid, "/status"));
  for (std::string line; std::getline(status, line);) {
    int64_t value = 0;
    std::istringstream fields(line);
    std::string key;
    fields >> key >> value;
    if (key == "VmRSS:") sample.rss_bytes = value * 1024;
    if (key == "Threads:") sample.threads = static_cast<int>(value);
  }
  DIR* fds = ::opendir(absl::StrCat("/proc/", pid, "/fd").c_str());
  if (fds == nullptr) return absl::NotFoundError(absl::StrCat("no /proc/", pid, "/fd"));
  while (const dirent* e = ::readdir(fds)) {
    if (e->d_name[0] != '.') ++sample.open_fds;
  }
  ::closedir(fds);
  return sample;
}

TestIdentity NewIdentity(std::string name, std::string role) {
  return {std::move(name), std::move(role), server::NewToken()};
}

absl::Status WriteTokensFile(const std::string& path, const std::vector<TestIdentity>& ids) {
  std::ofstream out(path);
  for (const TestIdentity& id : ids) {
    out << id.name << " " << id.role << " " << server::TokenHash(id.token) << "\n";
  }
  out.close();
  if (!out) return absl::InternalError(absl::StrCat("cannot write ", path));
  return absl::OkStatus();
}

std::shared_ptr<grpc::Channel> Connect(const std::string& address) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  // The default backoff grows to two minutes while qnetd is down; a restart takes about a second.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 50);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 50);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 250);
  return grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
}

void PrepareContext(grpc::ClientContext& ctx, const std::string& token, absl::Duration timeout,
                    bool wait_for_ready) {
  if (!token.empty()) ctx.AddMetadata("authorization", "Bearer " + token);
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  ctx.set_wait_for_ready(wait_for_ready);
}

bool IsTransient(grpc::StatusCode code) {
  return code == grpc::StatusCode::UNAVAILABLE || code == grpc::StatusCode::DEADLINE_EXCEEDED ||
         code == grpc::StatusCode::CANCELLED;
}

absl::Status ToStatus(const grpc::Status& s) {
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()), s.error_message());
}

absl::StatusOr<std::string> UploadBlob(qnet::v1::BlobService::Stub& blobs, const std::string& token,
                                       const std::string& data, const std::string& kind,
                                       const std::string& job_id) {
  grpc::ClientContext ctx;
  PrepareContext(ctx, token, absl::Seconds(30));
  qnet::v1::UploadResponse response;
  std::unique_ptr<grpc::ClientWriter<qnet::v1::UploadRequest>> stream =
      blobs.Upload(&ctx, &response);
  qnet::v1::UploadRequest msg;
  msg.mutable_header()->set_size_bytes(static_cast<int64_t>(data.size()));
  msg.mutable_header()->set_kind(kind);
  msg.mutable_header()->set_job_id(job_id);
  if (stream->Write(msg)) {
    msg.set_chunk(data);
    if (stream->Write(msg)) stream->WritesDone();
  }
  if (grpc::Status s = stream->Finish(); !s.ok()) return ToStatus(s);
  return response.digest();
}

Download DownloadBlob(qnet::v1::BlobService::Stub& blobs, const std::string& token,
                      const std::string& digest, int64_t offset) {
  grpc::ClientContext ctx;
  PrepareContext(ctx, token, absl::Seconds(30));
  qnet::v1::DownloadRequest request;
  request.set_digest(digest);
  request.set_offset(offset);
  std::unique_ptr<grpc::ClientReader<qnet::v1::DownloadChunk>> stream =
      blobs.Download(&ctx, request);
  Download result;
  for (qnet::v1::DownloadChunk chunk; stream->Read(&chunk);) result.data += chunk.data();
  result.status = ToStatus(stream->Finish());
  return result;
}

}  // namespace qnet::load
