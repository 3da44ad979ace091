#include "workers/worker/sandbox_child.h"

#include <fcntl.h>
#include <linux/landlock.h>
#include <sched.h>
#include <seccomp.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <map>
#include <mutex>
#include <string>

#include "absl/strings/str_cat.h"
#include "workers/worker/sandbox_protocol.h"
#include "workers/worker/worker_convert.h"

namespace qnet::worker {
namespace {

namespace fs = std::filesystem;

// Denied outright (EPERM). Names this libseccomp does not know are skipped.
// clang-format off
constexpr const char* kDeniedCalls[] = {
    // other processes: tracing, their memory and descriptors, signals by thread id
    "ptrace", "process_vm_readv", "process_vm_writev", "pidfd_getfd", "pidfd_send_signal", "tkill",
    // new processes and programs (threads come from clone(), filtered below)
    "fork", "vfork", "execve", "execveat",
    // mounts and namespaces
    "mount", "umount2", "pivot_root", "chroot", "move_mount", "open_tree", "fsopen", "fsmount",
    "fsconfig", "fspick", "mount_setattr", "setns", "unshare",
    // the kernel itself
    "kexec_load", "kexec_file_load", "bpf", "init_module", "finit_module", "delete_module",
    "reboot", "swapon", "swapoff", "perf_event_open", "userfaultfd", "open_by_handle_at", "iopl",
    "ioperm", "syslog", "acct", "quotactl", "lookup_dcookie", "vhangup", "personality",
    // io_uring performs socket operations the socket rule would not see
    "io_uring_setup", "io_uring_enter", "io_uring_register",
    // keyrings, clocks, host names
    "keyctl", "add_key", "request_key", "settimeofday", "clock_settime", "clock_adjtime",
    "adjtimex", "sethostname", "setdomainname"};
// clang-format on

// Namespace flags a thread-creating clone() must not carry.
constexpr uint64_t kCloneNamespaceFlags[] = {CLONE_NEWNS,    CLONE_NEWUSER, CLONE_NEWNET,
                                             CLONE_NEWPID,   CLONE_NEWIPC,  CLONE_NEWUTS,
                                             CLONE_NEWCGROUP};

absl::Status SeccompError(int rc, const std::string& what) {
  return absl::InternalError(absl::StrCat("seccomp ", what, ": ", std::strerror(-rc)));
}

// Protocol writes come from the engine's threads and the main one.
class ParentChannel {
 public:
  explicit ParentChannel(int fd) : fd_(fd) {}

  bool Send(const sandbox::FromChild& message) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (broken_) return false;
    broken_ = !WriteFrame(fd_, message).ok();
    return !broken_;
  }

  // Sends the checkpoint and waits until the parent has uploaded it.
  void Checkpoint(const std::string& path) {
    sandbox::FromChild message;
    message.set_checkpoint_path(path);
    std::lock_guard<std::mutex> lock(mutex_);
    if (broken_) return;
    sandbox::ToChild answer;
    broken_ = !WriteFrame(fd_, message).ok() || !ReadFrame(fd_, answer).ok() ||
              !answer.has_checkpoint_uploaded();
  }

  bool broken() {
    std::lock_guard<std::mutex> lock(mutex_);
    return broken_;
  }

 private:
  const int fd_;
  std::mutex mutex_;
  bool broken_ = false;
};

sandbox::Result ResultToProto(const absl::StatusOr<engine::JobResult>& result) {
  sandbox::Result out;
  if (!result.ok()) {
    out.set_code(static_cast<int>(result.status().code()));
    out.set_message(std::string(result.status().message()));
    return out;
  }
  *out.mutable_metrics() = MetricsToProto(result->metrics);
  for (const engine::ArtifactFile& file : result->artifacts) {
    sandbox::ArtifactFile* artifact = out.add_artifacts();
    artifact->set_kind(file.kind);
    artifact->set_path(file.path);
  }
  return out;
}

// The hidden files as a tree of path components from "/".
struct PathTree {
  std::map<std::string, PathTree> children;
  bool hidden = false;

  void Add(const fs::path& path) {
    PathTree* node = this;
    for (const fs::path& part : path.relative_path()) node = &node->children[part.string()];
    node->hidden = true;
  }
};

// Grants reads beneath every entry of `dir` except the hidden ones, descending into the folders
// that lead to them.
absl::Status GrantAllBut(int ruleset, const fs::path& dir, const PathTree& tree,
                         uint64_t dir_access) {
  std::error_code ec;
  fs::directory_iterator entries(dir, ec);
  if (ec) return absl::InternalError(absl::StrCat("listing ", dir.string(), ": ", ec.message()));
  for (const fs::directory_entry& entry : entries) {
    const fs::file_status status = entry.symlink_status(ec);
    if (ec || fs::is_symlink(status)) continue;
    const bool is_dir = fs::is_directory(status);
    if (auto on_path = tree.children.find(entry.path().filename().string());
        on_path != tree.children.end()) {
      if (on_path->second.hidden || !is_dir) continue;
      absl::Status s = GrantAllBut(ruleset, entry.path(), on_path->second, dir_access);
      if (!s.ok()) return s;
      continue;
    }
    const int fd = open(entry.path().c_str(), O_PATH | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) continue;  // unreadable anyway
    landlock_path_beneath_attr rule{};
    rule.allowed_access = is_dir ? dir_access : LANDLOCK_ACCESS_FS_READ_FILE;
    rule.parent_fd = fd;
    const long added =
        syscall(SYS_landlock_add_rule, ruleset, LANDLOCK_RULE_PATH_BENEATH, &rule, 0);
    const int add_errno = errno;
    close(fd);
    if (added != 0) {
      return absl::InternalError(absl::StrCat("landlock_add_rule ", entry.path().string(), ": ",
                                              std::strerror(add_errno)));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ConfineSystemCalls() {
  // Required for an unprivileged filter; also keeps setuid programs from gaining anything.
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
    return absl::InternalError(absl::StrCat("PR_SET_NO_NEW_PRIVS: ", std::strerror(errno)));
  }
  // Other architectures' system call numbers (x86-64's int 0x80) are killed by libseccomp's
  // default bad-architecture action.
  scmp_filter_ctx filter = seccomp_init(SCMP_ACT_ALLOW);
  if (filter == nullptr) return absl::InternalError("seccomp_init failed");
  const uint32_t deny = SCMP_ACT_ERRNO(EPERM);
  const scmp_datum_t self = static_cast<scmp_datum_t>(getpid());
  int rc = 0;
  auto add = [&](uint32_t action, int call, unsigned count, const scmp_arg_cmp* args) {
    if (rc == 0) rc = seccomp_rule_add_array(filter, action, call, count, args);
  };
  for (const char* name : kDeniedCalls) {
    const int call = seccomp_syscall_resolve_name(name);
    if (call != __NR_SCMP_ERROR) add(deny, call, 0, nullptr);
  }
  const scmp_arg_cmp not_unix = SCMP_A0(SCMP_CMP_NE, AF_UNIX);
  add(SCMP_ACT_ERRNO(EAFNOSUPPORT), SCMP_SYS(socket), 1, &not_unix);
  const scmp_arg_cmp not_self = SCMP_A0(SCMP_CMP_NE, self);
  for (int call :
       {SCMP_SYS(kill), SCMP_SYS(tgkill), SCMP_SYS(rt_sigqueueinfo), SCMP_SYS(rt_tgsigqueueinfo)}) {
    add(deny, call, 1, &not_self);
  }
  const scmp_arg_cmp other_process = SCMP_A0(SCMP_CMP_NE, 0);  // glibc passes 0 for itself
  add(deny, SCMP_SYS(prlimit64), 1, &other_process);
  // clone() makes threads only: a new process would escape the parent's memory watch.
  const scmp_arg_cmp not_thread = SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_THREAD, 0);
  add(deny, SCMP_SYS(clone), 1, &not_thread);
  for (uint64_t flag : kCloneNamespaceFlags) {
    const scmp_arg_cmp with_flag = SCMP_A0(SCMP_CMP_MASKED_EQ, flag, flag);
    add(deny, SCMP_SYS(clone), 1, &with_flag);
  }
  // clone3's flags sit behind a pointer the filter cannot read: ENOSYS makes glibc use clone().
  add(SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0, nullptr);
  if (rc != 0) {
    seccomp_release(filter);
    return SeccompError(rc, "rule");
  }
  rc = seccomp_load(filter);
  seccomp_release(filter);
  return rc == 0 ? absl::OkStatus() : SeccompError(rc, "load");
}

absl::Status HideFiles(const std::vector<std::string>& files) {
  const long abi =
      syscall(SYS_landlock_create_ruleset, nullptr, 0, LANDLOCK_CREATE_RULESET_VERSION);
  if (abi < 1) {
    return absl::UnimplementedError(
        absl::StrCat("this kernel offers no Landlock (", std::strerror(errno), ")"));
  }
  // Reads only: writing, executing and the rest stay as the other confinements leave them. ABI 1
  // denies moving files between folders (REFER) whatever the rules; from ABI 2 it can be granted.
  const uint64_t dir_access = LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_READ_DIR |
                              (abi >= 2 ? LANDLOCK_ACCESS_FS_REFER : 0);
  // Required for an unprivileged landlock_restrict_self, as for seccomp.
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
    return absl::InternalError(absl::StrCat("PR_SET_NO_NEW_PRIVS: ", std::strerror(errno)));
  }
  landlock_ruleset_attr attr{};
  attr.handled_access_fs = dir_access;
  const int ruleset = static_cast<int>(syscall(SYS_landlock_create_ruleset, &attr, sizeof attr, 0));
  if (ruleset < 0) {
    return absl::InternalError(absl::StrCat("landlock_create_ruleset: ", std::strerror(errno)));
  }
  PathTree hidden;
  for (const std::string& file : files) {
    std::error_code ec;
    hidden.Add(fs::absolute(file, ec).lexically_normal());  // as named
    const fs::path real = fs::canonical(file, ec);          // where it lies
    if (!ec) hidden.Add(real);
  }
  absl::Status granted = GrantAllBut(ruleset, "/", hidden, dir_access);
  if (granted.ok() && syscall(SYS_landlock_restrict_self, ruleset, 0) != 0) {
    granted = absl::InternalError(absl::StrCat("landlock_restrict_self: ", std::strerror(errno)));
  }
  close(ruleset);
  return granted;
}

int RunSandboxChild(int fd, const JobRunner& runner) {
  ParentChannel parent(fd);
  sandbox::ToChild request;
  if (!ReadFrame(fd, request).ok() || !request.has_job()) return 1;
  const engine::JobRun run = JobFromProto(request.job());

  sandbox::FromChild started;
  const std::vector<std::string> hidden(request.job().hidden_files().begin(),
                                        request.job().hidden_files().end());
  if (!hidden.empty()) {
    const absl::Status files_hidden = HideFiles(hidden);
    started.mutable_started()->set_files_hidden(files_hidden.ok());
    started.mutable_started()->set_files_error(std::string(files_hidden.message()));
  }
  const absl::Status confined = ConfineSystemCalls();
  started.mutable_started()->set_seccomp(confined.ok());
  started.mutable_started()->set_seccomp_error(std::string(confined.message()));
  if (!parent.Send(started)) return 1;

  engine::JobCallbacks callbacks;
  callbacks.on_progress = [&parent](const engine::ProgressEvent& event) {
    sandbox::FromChild message;
    *message.mutable_progress() = ProgressToProto(event);
    parent.Send(message);
  };
  callbacks.on_checkpoint = [&parent](const std::string& path) { parent.Checkpoint(path); };
  // The parent stops a job by killing this process; a lost parent stops it here.
  callbacks.should_stop = [&parent] { return parent.broken(); };

  sandbox::FromChild message;
  *message.mutable_result() = ResultToProto(RunCatching(runner, run, callbacks));
  return parent.Send(message) ? 0 : 1;
}

}  // namespace qnet::worker
