#include "tests/load/load_run.h"

#include <signal.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <filesystem>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "common/digest.h"
#include "qnet/v1/job.grpc.pb.h"
#include "qnet/v1/worker.grpc.pb.h"
#include "tests/load/qnetd_process.h"
#include "tests/server/test_util.h"

namespace qnet::load {
namespace {

namespace fs = std::filesystem;
using qnet::v1::Job;

constexpr char kRequestPrefix[] = "load-";
constexpr char kDeterministicError[] = "simulated deterministic failure";
constexpr char kRetryableError[] = "simulated retryable failure";
constexpr size_t kMaxViolations = 50;
constexpr int kArtifactSamples = 20;

// What a simulated worker does with a job, chosen by the job's request id.
enum class JobClass {
  kComplete,           // completes at once
  kFailDeterministic,  // FailLease(retryable=false): FAILED at attempt 1
  kFailRetryable,      // FailLease(retryable=true) every attempt: FAILED after max attempts
  kFailOnce,           // retryable failure at attempt 1, then completes
  kAbandonOnce,        // attempt 1 stops heart-beating (the lease expires), then completes
};

JobClass ClassOf(int64_t index) {
  switch (index % 40) {
    case 3:
    case 23:
      return JobClass::kFailDeterministic;
    case 7:
      return JobClass::kFailRetryable;
    case 11:
    case 31:
      return JobClass::kFailOnce;
    case 13:
      return JobClass::kAbandonOnce;
    default:
      return JobClass::kComplete;
  }
}

bool IsTerminal(qnet::v1::JobState state) {
  return state == qnet::v1::SUCCEEDED || state == qnet::v1::FAILED || state == qnet::v1::CANCELLED;
}

// What the workers saw of one job.
struct Seen {
  std::set<int> attempts;  // leased
  int completes_accepted = 0;
  std::vector<std::string> accepted_digests;   // artifacts of accepted completions
  std::vector<std::string> ambiguous_digests;  // completions cut off by a kill
};

struct Run {
  explicit Run(const LoadOptions& o) : options(o), deadline(absl::Now() + o.timeout) {}

  const LoadOptions& options;
  const absl::Time deadline;
  std::string address;
  TestIdentity client, admin;
  std::vector<TestIdentity> workers;
  std::vector<std::string> submitted;  // request index -> job id ("" until acknowledged)

  std::atomic<bool> stop_workers{false};
  std::atomic<int> kills{0};
  std::atomic<int64_t> transient{0}, ambiguous{0}, leases{0}, leases_lost{0};

  std::mutex mu;
  std::condition_variable progressed;
  int64_t submits = 0;            // acknowledged
  int64_t finishes = 0;           // terminal reports accepted
  absl::Duration longest_outage;  // SIGKILL to serving again
  std::map<std::string, Seen> seen;
  std::vector<std::string> violations;
  int64_t violation_count = 0;

  void Violation(std::string what) {
    std::lock_guard<std::mutex> lock(mu);
    if (violations.size() < kMaxViolations) violations.push_back(std::move(what));
    ++violation_count;
  }
  void Count(int64_t Run::*counter) {
    {
      std::lock_guard<std::mutex> lock(mu);
      ++(this->*counter);
    }
    progressed.notify_all();
  }

  // Calls `call(ctx)` again while it fails only because qnetd is down (a kill, a restart), up to
  // the run's deadline. `interrupted` turns true when an earlier try may have reached qnetd.
  template <typename Call>
  grpc::Status Retry(const std::string& token, Call call, bool* interrupted = nullptr) {
    while (true) {
      grpc::ClientContext ctx;
      PrepareContext(ctx, token, absl::Seconds(10));
      grpc::Status s = call(ctx);
      if (!IsTransient(s.error_code()) || absl::Now() >= deadline) return s;
      ++transient;
      if (interrupted != nullptr) *interrupted = true;
    }
  }
};

std::string Describe(const grpc::Status& s) {
  return absl::StrCat("code ", s.error_code(), ": ", s.error_message());
}

void RunClient(Run& run, int client) {
  auto jobs = qnet::v1::JobService::NewStub(Connect(run.address));
  for (int i = client; i < run.options.jobs; i += run.options.clients) {
    qnet::v1::SubmitJobRequest request;
    request.set_request_id(absl::StrCat(kRequestPrefix, i));
    qnet::v1::JobSpec& spec = *request.mutable_spec();
    spec.set_model("zoo:lenet5");
    spec.set_dataset("load");
    spec.set_weight_bits(2);
    spec.set_activation_bits(2);
    spec.mutable_training()->set_epochs(1);
    Job job;
    const grpc::Status s = run.Retry(run.client.token, [&](grpc::ClientContext& ctx) {
      return jobs->SubmitJob(&ctx, request, &job);
    });
    if (!s.ok()) {
      run.Violation(absl::StrCat("SubmitJob ", request.request_id(), " failed: ", Describe(s)));
      continue;
    }
    run.submitted[i] = job.id();
    run.Count(&Run::submits);
  }
}

// Complete or FailLease, retried across kills. A retry refused because the lease is gone is
// ambiguous: the cut-off try may have been applied (the final state tells).
enum class Report { kAccepted, kAmbiguous, kRefused };

template <typename Call>
Report SendReport(Run& run, const std::string& token, const std::string& what, Call call) {
  bool interrupted = false;
  const grpc::Status s = run.Retry(token, call, &interrupted);
  if (s.ok()) return Report::kAccepted;
  if (interrupted && s.error_code() == grpc::StatusCode::FAILED_PRECONDITION) {
    ++run.ambiguous;
    return Report::kAmbiguous;
  }
  run.Violation(absl::StrCat(what, " refused: ", Describe(s)));
  return Report::kRefused;
}

void WorkOnLease(Run& run, int w, qnet::v1::WorkerService::Stub& stub,
                 qnet::v1::BlobService::Stub& blobs, const qnet::v1::AcquireLeaseResponse& lease) {
  const Job& job = lease.job();
  const std::string& token = run.workers[w].token;
  const int attempt = job.attempt();
  const int kills_before = run.kills;
  // A lease can run out while qnetd is down (a restart slower than the lease); the worker then
  // drops the job, as qnet-worker does, and the job runs again.
  const auto lost_to_kill = [&](absl::StatusCode code) {
    const bool lost = run.kills != kills_before && (code == absl::StatusCode::kFailedPrecondition ||
                                                    code == absl::StatusCode::kPermissionDenied);
    if (lost) ++run.leases_lost;
    return lost;
  };
  bool leased_before = false;
  {
    std::lock_guard<std::mutex> lock(run.mu);
    leased_before = !run.seen[job.id()].attempts.insert(attempt).second;
  }
  if (leased_before) {
    run.Violation(absl::StrCat("job ", job.id(), " attempt ", attempt,
                               " leased twice (second to worker ", w, ")"));
  }
  int64_t index = -1;
  if (!absl::SimpleAtoi(absl::StripPrefix(job.request_id(), kRequestPrefix), &index)) {
    run.Violation(absl::StrCat("job ", job.id(), " has request id \"", job.request_id(), "\""));
    return;
  }
  const JobClass job_class = ClassOf(index);
  if (job_class == JobClass::kAbandonOnce && attempt == 1) return;  // its lease runs out

  qnet::v1::HeartbeatRequest beat;
  beat.set_job_id(job.id());
  beat.set_lease_token(lease.lease_token());
  beat.mutable_progress()->set_phase("weights");
  beat.mutable_progress()->set_epoch(1);
  beat.mutable_progress()->set_total_epochs(1);
  qnet::v1::HeartbeatResponse beat_reply;
  if (grpc::Status s = run.Retry(
          token, [&](grpc::ClientContext& ctx) { return stub.Heartbeat(&ctx, beat, &beat_reply); });
      !s.ok()) {
    if (!lost_to_kill(ToStatus(s).code())) {
      run.Violation(absl::StrCat("Heartbeat of job ", job.id(), " attempt ", attempt,
                                 " refused: ", Describe(s)));
    }
    return;
  }

  const bool fail = job_class == JobClass::kFailDeterministic ||
                    job_class == JobClass::kFailRetryable ||
                    (job_class == JobClass::kFailOnce && attempt == 1);
  if (fail) {
    qnet::v1::FailLeaseRequest request;
    request.set_job_id(job.id());
    request.set_lease_token(lease.lease_token());
    const bool retryable = job_class != JobClass::kFailDeterministic;
    request.set_retryable(retryable);
    request.set_error(retryable ? kRetryableError : kDeterministicError);
    qnet::v1::FailLeaseResponse reply;
    const Report r =
        SendReport(run, token, absl::StrCat("FailLease of job ", job.id()),
                   [&](grpc::ClientContext& ctx) { return stub.FailLease(&ctx, request, &reply); });
    if (r == Report::kAccepted && (!retryable || attempt >= run.options.max_attempts)) {
      run.Count(&Run::finishes);
    }
    return;
  }

  const std::string artifact =
      absl::StrCat("metrics of job ", job.id(), " attempt ", attempt, " by worker ", w, "\n");
  absl::StatusOr<std::string> digest = absl::UnavailableError("not tried");
  for (bool again = true; again;) {
    digest = UploadBlob(blobs, token, artifact, "artifact", job.id());
    again = !digest.ok() && IsTransient(static_cast<grpc::StatusCode>(digest.status().code())) &&
            absl::Now() < run.deadline;
    if (again) ++run.transient;
  }
  if (!digest.ok()) {
    if (!lost_to_kill(digest.status().code())) {
      run.Violation(
          absl::StrCat("artifact upload for job ", job.id(), ": ", digest.status().ToString()));
    }
    return;
  }
  qnet::v1::CompleteLeaseRequest request;
  request.set_job_id(job.id());
  request.set_lease_token(lease.lease_token());
  request.mutable_metrics()->set_quantized_top1(0.5);
  qnet::v1::Artifact& a = *request.add_artifacts();
  a.set_kind("metrics");
  a.set_digest(*digest);
  a.set_size_bytes(static_cast<int64_t>(artifact.size()));
  a.set_filename("metrics.json");
  qnet::v1::CompleteLeaseResponse reply;
  const Report r = SendReport(
      run, token, absl::StrCat("CompleteLease of job ", job.id()),
      [&](grpc::ClientContext& ctx) { return stub.CompleteLease(&ctx, request, &reply); });
  {
    std::lock_guard<std::mutex> lock(run.mu);
    Seen& seen = run.seen[job.id()];
    if (r == Report::kAccepted) {
      ++seen.completes_accepted;
      seen.accepted_digests.push_back(*digest);
    } else if (r == Report::kAmbiguous) {
      seen.ambiguous_digests.push_back(*digest);
    }
  }
  if (r == Report::kAccepted) run.Count(&Run::finishes);
}

void RunWorker(Run& run, int w) {
  auto channel = Connect(run.address);
  auto stub = qnet::v1::WorkerService::NewStub(channel);
  auto blobs = qnet::v1::BlobService::NewStub(channel);
  qnet::v1::AcquireLeaseRequest request;
  request.set_worker_id(absl::StrCat("sim-", w));
  request.set_device("cpu");
  request.set_wait_seconds(1);
  while (!run.stop_workers && absl::Now() < run.deadline) {
    qnet::v1::AcquireLeaseResponse lease;
    const grpc::Status s = run.Retry(run.workers[w].token, [&](grpc::ClientContext& ctx) {
      lease.Clear();
      return stub->AcquireLease(&ctx, request, &lease);
    });
    if (!s.ok()) {
      run.Violation(absl::StrCat("AcquireLease by worker ", w, " refused: ", Describe(s)));
      return;
    }
    if (!lease.has_job()) continue;
    ++run.leases;
    WorkOnLease(run, w, *stub, *blobs, lease);
  }
}

// SIGKILL and restart `restarts` times: the first once half the jobs are submitted (submits and
// leases in flight), each further one after its share of the jobs finished.
void RunChaos(Run& run, QnetdProcess& qnetd, int* restarts) {
  const int64_t jobs = run.options.jobs;
  for (int k = 1; k <= run.options.restarts; ++k) {
    const auto due = [&] {
      return k == 1 ? run.submits >= jobs / 2
                    : run.finishes >= jobs * (k - 1) / run.options.restarts;
    };
    {
      std::unique_lock<std::mutex> lock(run.mu);
      if (!run.progressed.wait_until(lock, absl::ToChronoTime(run.deadline), due)) {
        lock.unlock();
        run.Violation(absl::StrCat("restart ", k, " never came (", run.submits, " submitted, ",
                                   run.finishes, " finished)"));
        return;
      }
    }
    const absl::Time killed = absl::Now();
    if (absl::StatusOr<int> code = qnetd.Stop(SIGKILL); !code.ok()) {
      run.Violation(absl::StrCat("SIGKILL of qnetd: ", code.status().ToString()));
      return;
    }
    ++run.kills;
    if (absl::Status s = qnetd.Start(run.address); !s.ok()) {
      run.Violation(absl::StrCat("restart ", k, " of qnetd on ", run.address, ": ", s.ToString()));
      return;
    }
    {
      std::lock_guard<std::mutex> lock(run.mu);
      run.longest_outage = std::max(run.longest_outage, absl::Now() - killed);
    }
    ++*restarts;
  }
}

// qnetd's peaks from /proc until `stop`; sampled every 50 ms across restarts.
class PeakSampler {
 public:
  explicit PeakSampler(const QnetdProcess& qnetd)
      : thread_([this, &qnetd] {
          std::unique_lock<std::mutex> lock(mu_);
          while (!stop_) {
            if (const pid_t pid = qnetd.pid(); pid > 0) {
              if (absl::StatusOr<ProcSample> s = SampleProc(pid); s.ok()) {
                peak_.rss_bytes = std::max(peak_.rss_bytes, s->rss_bytes);
                peak_.open_fds = std::max(peak_.open_fds, s->open_fds);
                peak_.threads = std::max(peak_.threads, s->threads);
              }
            }
            wake_.wait_for(lock, std::chrono::milliseconds(50), [this] { return stop_; });
          }
        }) {}
  ProcSample Finish() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    wake_.notify_all();
    thread_.join();
    return peak_;
  }

 private:
  std::mutex mu_;
  std::condition_variable wake_;
  bool stop_ = false;
  ProcSample peak_;
  std::thread thread_;
};

// Whether no job is QUEUED or RUNNING (all were submitted before this is asked).
absl::StatusOr<bool> AllTerminal(Run& run, qnet::v1::JobService::Stub& jobs) {
  for (qnet::v1::JobState state : {qnet::v1::QUEUED, qnet::v1::RUNNING}) {
    qnet::v1::ListJobsRequest request;
    request.set_state(state);
    request.set_page_size(1);
    qnet::v1::ListJobsResponse response;
    const grpc::Status s = run.Retry(run.admin.token, [&](grpc::ClientContext& ctx) {
      return jobs.ListJobs(&ctx, request, &response);
    });
    if (!s.ok()) return ToStatus(s);
    if (response.jobs_size() > 0) return false;
  }
  return true;
}

absl::StatusOr<std::vector<Job>> ListAll(Run& run, qnet::v1::JobService::Stub& jobs) {
  std::vector<Job> all;
  qnet::v1::ListJobsRequest request;
  request.set_page_size(500);
  do {
    qnet::v1::ListJobsResponse response;
    const grpc::Status s = run.Retry(run.admin.token, [&](grpc::ClientContext& ctx) {
      return jobs.ListJobs(&ctx, request, &response);
    });
    if (!s.ok()) return ToStatus(s);
    for (Job& j : *response.mutable_jobs()) all.push_back(std::move(j));
    request.set_page_token(response.next_page_token());
  } while (!request.page_token().empty());
  return all;
}

// The outcome a job's class asks for; "" when `job` has it.
std::string WrongOutcome(const Job& job, JobClass job_class, int max_attempts) {
  const bool succeeded = job.state() == qnet::v1::SUCCEEDED;
  switch (job_class) {
    case JobClass::kComplete:
      if (succeeded) return "";
      break;
    case JobClass::kFailDeterministic:
      if (job.state() == qnet::v1::FAILED && absl::StrContains(job.error(), kDeterministicError)) {
        return "";
      }
      break;
    case JobClass::kFailRetryable:
      if (job.state() == qnet::v1::FAILED && job.attempt() == max_attempts) return "";
      break;
    case JobClass::kFailOnce:
    case JobClass::kAbandonOnce:
      if (succeeded && job.attempt() >= 2) return "";
      break;
  }
  return absl::StrCat("ended ", qnet::v1::JobState_Name(job.state()), " at attempt ", job.attempt(),
                      " (", job.error(), "), not as its class asks");
}

void Verify(Run& run, const std::vector<Job>& all, LoadReport& report,
            qnet::v1::BlobService::Stub& client_blobs) {
  std::map<std::string, const Job*> by_id;
  std::map<std::string, int> by_request;
  for (const Job& j : all) {
    if (!by_id.emplace(j.id(), &j).second)
      run.Violation(absl::StrCat("job ", j.id(), " listed twice"));
    ++by_request[j.request_id()];
  }
  if (static_cast<int>(all.size()) != run.options.jobs) {
    run.Violation(absl::StrCat(all.size(), " jobs stored for ", run.options.jobs, " requests"));
  }
  for (const auto& [request_id, n] : by_request) {
    if (n != 1) run.Violation(absl::StrCat("request id ", request_id, " made ", n, " jobs"));
  }
  for (int i = 0; i < run.options.jobs; ++i) {
    if (!run.submitted[i].empty() && !by_id.contains(run.submitted[i])) {
      run.Violation(absl::StrCat("acknowledged job ", run.submitted[i], " (", kRequestPrefix, i,
                                 ") is lost"));
    }
  }
  int sampled = 0;
  for (const Job& job : all) {
    if (job.state() == qnet::v1::SUCCEEDED) ++report.succeeded;
    if (job.state() == qnet::v1::FAILED) ++report.failed;
    if (!IsTerminal(job.state())) {
      run.Violation(absl::StrCat("job ", job.id(), " is ", qnet::v1::JobState_Name(job.state())));
    }
    if (job.attempt() < 1 || job.attempt() > run.options.max_attempts) {
      run.Violation(absl::StrCat("job ", job.id(), " ran ", job.attempt(), " attempts"));
    }
    int64_t index = -1;
    if (absl::SimpleAtoi(absl::StripPrefix(job.request_id(), kRequestPrefix), &index)) {
      if (std::string wrong = WrongOutcome(job, ClassOf(index), run.options.max_attempts);
          !wrong.empty()) {
        run.Violation(absl::StrCat("job ", job.id(), " (", job.request_id(), ") ", wrong));
      }
    }
    const Seen seen = run.seen[job.id()];
    if (!seen.attempts.empty() && *seen.attempts.rbegin() > job.attempt()) {
      run.Violation(absl::StrCat("job ", job.id(), " was leased at attempt ",
                                 *seen.attempts.rbegin(), " but records ", job.attempt()));
    }
    if (seen.completes_accepted > 1) {
      run.Violation(absl::StrCat("job ", job.id(), ": ", seen.completes_accepted,
                                 " CompleteLease calls accepted"));
    }
    const std::string stored = job.artifacts_size() == 1 ? job.artifacts(0).digest() : "";
    const auto was = [&](const std::vector<std::string>& digests) {
      return std::find(digests.begin(), digests.end(), stored) != digests.end();
    };
    if (seen.completes_accepted == 1 &&
        (job.state() != qnet::v1::SUCCEEDED || stored != seen.accepted_digests.front())) {
      run.Violation(absl::StrCat("job ", job.id(), ": its accepted completion (",
                                 seen.accepted_digests.front(), ") is not its final state ",
                                 qnet::v1::JobState_Name(job.state()), " ", stored));
    }
    if (job.state() == qnet::v1::SUCCEEDED && seen.completes_accepted == 0 &&
        !was(seen.ambiguous_digests)) {
      run.Violation(absl::StrCat("job ", job.id(), " SUCCEEDED with artifact ", stored,
                                 " that no worker's completion named"));
    }
    // The owner may download the artifacts of its finished jobs, byte for byte.
    if (job.state() == qnet::v1::SUCCEEDED && !stored.empty() && sampled < kArtifactSamples) {
      ++sampled;
      Download d = DownloadBlob(client_blobs, run.client.token, stored);
      if (!d.status.ok() || DigestOf(d.data) != stored ||
          !absl::StartsWith(d.data, absl::StrCat("metrics of job ", job.id(), " "))) {
        run.Violation(absl::StrCat("artifact ", stored, " of job ", job.id(),
                                   " does not download intact: ", d.status.ToString()));
      }
    }
  }
}

}  // namespace

absl::StatusOr<LoadReport> RunLoad(const LoadOptions& o) {
  if (o.jobs < 1 || o.clients < 1 || o.workers < 1 || o.restarts < 0) {
    return absl::InvalidArgumentError("jobs, clients and workers must be positive");
  }
  Run run(o);
  fs::create_directories(o.work_dir);
  const std::string dataset = o.work_dir + "/dataset";
  server::testing::MakeFakeIdxDataset(dataset);
  run.client = NewIdentity("load-client", "client");
  run.admin = NewIdentity("load-admin", "admin");
  std::vector<TestIdentity> everyone = {run.client, run.admin};
  for (int w = 0; w < o.workers; ++w) {
    run.workers.push_back(NewIdentity(absl::StrCat("load-worker-", w), "worker"));
    everyone.push_back(run.workers.back());
  }
  const std::string tokens = o.work_dir + "/tokens";
  if (absl::Status s = WriteTokensFile(tokens, everyone); !s.ok()) return s;
  run.submitted.assign(o.jobs, "");

  QnetdProcess qnetd(o.qnetd,
                     {"--data-dir", o.work_dir + "/data", "--dataset", "load=idx:" + dataset,
                      "--auth-tokens", tokens, "--lease-seconds", absl::StrCat(o.lease_seconds),
                      "--max-attempts", absl::StrCat(o.max_attempts), "--local-workers", "0",
                      "--max-wait-seconds", "5", "--log-level", "info",
                      // One client identity submits every job: its quotas would refuse the load.
                      "--quota-queued-jobs", "0", "--quota-submits-per-minute", "0"},
                     o.work_dir + "/qnetd.log");
  if (absl::Status s = qnetd.Start(); !s.ok()) return s;
  run.address = qnetd.grpc_address();

  LoadReport report;
  PeakSampler sampler(qnetd);
  const absl::Time start = absl::Now();
  std::vector<std::thread> clients, workers;
  for (int c = 0; c < o.clients; ++c) clients.emplace_back(RunClient, std::ref(run), c);
  for (int w = 0; w < o.workers; ++w) workers.emplace_back(RunWorker, std::ref(run), w);
  std::thread chaos(RunChaos, std::ref(run), std::ref(qnetd), &report.restarts);
  for (std::thread& t : clients) t.join();
  chaos.join();

  auto jobs = qnet::v1::JobService::NewStub(Connect(run.address));
  absl::StatusOr<bool> done = false;
  {
    // Every report wakes this; a lease that runs out does not, hence the bounded wait.
    std::unique_lock<std::mutex> lock(run.mu);
    while (absl::Now() < run.deadline) {
      lock.unlock();
      done = AllTerminal(run, *jobs);
      lock.lock();
      if (!done.ok() || *done) break;
      run.progressed.wait_for(lock, std::chrono::milliseconds(100));
    }
  }
  report.wall_seconds = absl::ToDoubleSeconds(absl::Now() - start);
  run.stop_workers = true;
  for (std::thread& t : workers) t.join();
  const ProcSample peak = sampler.Finish();
  // qnetd stores leases: an outage well within a lease must lose none of them.
  if (run.leases_lost > 0 && run.longest_outage < absl::Seconds(o.lease_seconds) / 2) {
    run.Violation(absl::StrCat(run.leases_lost.load(), " leases lost across restarts of at most ",
                               absl::FormatDuration(run.longest_outage), " (leases last ",
                               o.lease_seconds, " s)"));
  }
  if (!done.ok()) return done.status();
  if (!*done) run.Violation("jobs still QUEUED or RUNNING at the deadline");

  absl::StatusOr<std::vector<Job>> all = ListAll(run, *jobs);
  if (!all.ok()) return all.status();
  auto blobs = qnet::v1::BlobService::NewStub(Connect(run.address));
  Verify(run, *all, report, *blobs);
  // Closed before SIGTERM: qnetd's drain otherwise waits on these idle connections for seconds.
  blobs.reset();
  jobs.reset();
  if (absl::StatusOr<int> code = qnetd.Stop(SIGTERM); !code.ok() || *code != 0) {
    run.Violation(absl::StrCat("qnetd did not exit 0 on SIGTERM: ",
                               code.ok() ? absl::StrCat(*code) : code.status().ToString()));
  }

  report.jobs = static_cast<int64_t>(all->size());
  report.jobs_per_second = report.wall_seconds > 0 ? o.jobs / report.wall_seconds : 0;
  report.peak_rss_bytes = peak.rss_bytes;
  report.peak_fds = peak.open_fds;
  report.peak_threads = peak.threads;
  report.transient_errors = run.transient;
  report.ambiguous_reports = run.ambiguous;
  report.leases = run.leases;
  report.leases_lost = run.leases_lost;
  report.longest_outage_seconds = absl::ToDoubleSeconds(run.longest_outage);
  report.violations = run.violations;
  if (run.violation_count > static_cast<int64_t>(run.violations.size())) {
    report.violations.push_back(
        absl::StrCat("... ", run.violation_count - run.violations.size(), " more violations"));
  }
  return report;
}

}  // namespace qnet::load
