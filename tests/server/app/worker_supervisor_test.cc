// WorkerSupervisor with a stand-in worker (a shell script): arguments, restart after a crash,
// and stop.
#include "server/app/worker_supervisor.h"

#include <signal.h>
#include <sys/stat.h>

#include <thread>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/server/test_util.h"

namespace qnet::server {
namespace {

using ::testing::HasSubstr;
using testing::TempDir;
using testing::WaitFor;

bool Alive(pid_t pid) { return pid > 0 && ::kill(pid, 0) == 0; }

TEST(WorkerSupervisorTest, FindsTheBinary) {
  TempDir dir;
  EXPECT_EQ(WorkerSupervisor::FindWorkerBinary(dir / "nope").status().code(),
            absl::StatusCode::kNotFound);
  testing::WriteFile(dir / "qnet-worker", "#!/bin/sh\n");
  EXPECT_FALSE(WorkerSupervisor::FindWorkerBinary(dir / "qnet-worker").ok());  // not executable
  ::chmod((dir / "qnet-worker").c_str(), 0755);
  EXPECT_EQ(*WorkerSupervisor::FindWorkerBinary(dir / "qnet-worker"), dir / "qnet-worker");
}

TEST(WorkerSupervisorTest, StartsRestartsAndStops) {
  TempDir dir;
  const std::string script = dir / "fake-worker.sh";
  testing::WriteFile(
      script, absl::StrCat("#!/bin/sh\necho \"$@\" >> ", dir / "args.txt", "\nexec sleep 60\n"));
  ::chmod(script.c_str(), 0755);
  WorkerSupervisorOptions options;
  options.binary = script;
  options.server_address = "127.0.0.1:5555";
  options.data_dir = dir.path();
  options.count = 2;
  options.min_backoff = absl::Milliseconds(50);
  WorkerSupervisor supervisor(options);
  supervisor.Start();
  ASSERT_TRUE(WaitFor([&] {
    auto pids = supervisor.pids();
    return pids.size() == 2 && Alive(pids[0]) && Alive(pids[1]);
  }));
  // Both workers' lines: they start concurrently, so either may be written first.
  ASSERT_TRUE(WaitFor([&] {
    const std::string written = testing::ReadFile(dir / "args.txt");
    return written.find("worker-cache-0") != std::string::npos &&
           written.find("worker-cache-1") != std::string::npos;
  }));
  const std::string args = testing::ReadFile(dir / "args.txt");
  EXPECT_THAT(args,
              HasSubstr("serve --server 127.0.0.1:5555 --cache-dir " + dir / "worker-cache-0"));
  EXPECT_THAT(args, HasSubstr("--cache-dir " + dir / "worker-cache-1"));

  const pid_t first = supervisor.pids()[0];
  ::kill(first, SIGKILL);
  ASSERT_TRUE(WaitFor([&] {
    const pid_t now = supervisor.pids()[0];
    return now != first && Alive(now);
  }));
  EXPECT_EQ(supervisor.restarts(), 1);

  const std::vector<pid_t> pids = supervisor.pids();
  supervisor.Stop(absl::Seconds(5));
  for (pid_t pid : pids) EXPECT_FALSE(Alive(pid)) << pid;
  supervisor.Stop();  // idempotent
}

}  // namespace
}  // namespace qnet::server
