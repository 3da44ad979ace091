// A bounded load run against the real qnetd: client threads submit jobs (each with its own
// request id, retried across restarts), simulated workers speak WorkerService directly (acquire,
// heartbeat, upload a tiny artifact, complete; or fail, retryably or not; or abandon a lease so it
// expires), and qnetd is killed with SIGKILL and restarted on the same data folder and port while
// they run. Then every job is checked: one terminal state each, none lost, none duplicated, no
// completion accepted twice, no attempt leased twice, attempts within --max-attempts, the outcome
// its job class asks for, and sampled artifacts downloadable by their owner. qnetd's peak RSS and
// open descriptors are sampled from /proc throughout.
//
//   LoadOptions o{.qnetd = "build/server/qnetd", .work_dir = "/tmp/x", .jobs = 500};
//   absl::StatusOr<LoadReport> report = RunLoad(o);
//   report->violations  // empty when every check held
#ifndef QNET_TESTS_LOAD_LOAD_RUN_H_
#define QNET_TESTS_LOAD_LOAD_RUN_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace qnet::load {

struct LoadOptions {
  std::string qnetd;     // the qnetd binary
  std::string work_dir;  // data folder, tokens, dataset and log go here
  int jobs = 500;
  int clients = 8;
  int workers = 8;
  int restarts = 1;  // SIGKILL + restart, spread evenly over the run
  int lease_seconds = 4;
  int max_attempts = 3;
  absl::Duration timeout = absl::Minutes(5);  // the whole run; every wait is bounded by it
};

struct LoadReport {
  int64_t jobs = 0;
  int64_t succeeded = 0;
  int64_t failed = 0;
  int restarts = 0;
  double longest_outage_seconds = 0;  // SIGKILL to serving again
  double wall_seconds = 0;            // first submit to every job terminal
  double jobs_per_second = 0;
  int64_t peak_rss_bytes = 0;
  int peak_fds = 0;
  int peak_threads = 0;
  int64_t transient_errors = 0;   // calls that failed because qnetd was down, then retried
  int64_t ambiguous_reports = 0;  // Complete/FailLease cut off by a kill, outcome read back
  int64_t leases = 0;
  int64_t leases_lost = 0;              // ran out while qnetd was down; the job ran again
  std::vector<std::string> violations;  // each broken invariant, with the job it concerns
};

absl::StatusOr<LoadReport> RunLoad(const LoadOptions& options);

}  // namespace qnet::load

#endif  // QNET_TESTS_LOAD_LOAD_RUN_H_
