// qnet_load_test: the load run of load_run.h against a real qnetd, with its report and bounds.
// Exits 0 when every job ended exactly once as its class asks and qnetd's peak RSS and open
// descriptors stayed within the bounds; 1 otherwise (each broken check printed); 2 on bad flags.
//
//   qnet_load_test --qnetd build/server/qnetd                       # 500 jobs, one restart
//   qnet_load_test --qnetd build/server/qnetd --jobs 20000 --clients 32 --workers 50
//       --restarts 2 --lease-seconds 10 --timeout-seconds 900   # docs/BENCHMARKS.md
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <string>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "tests/load/load_run.h"

int main(int argc, char** argv) {
  qnet::load::LoadOptions o;
  int timeout_seconds = 300;
  int max_rss_mib = 256;
  int max_fds = 512;
  bool keep = false;
  CLI::App app{"qnet_load_test: jobs, simulated workers and qnetd restarts; checks exactly once"};
  app.add_option("--qnetd", o.qnetd, "the qnetd binary")->required();
  app.add_option("--work-dir", o.work_dir, "folder for qnetd's data and log (default: a new temp)");
  app.add_option("--jobs", o.jobs, "jobs to submit")->capture_default_str();
  app.add_option("--clients", o.clients, "client threads submitting")->capture_default_str();
  app.add_option("--workers", o.workers, "simulated workers")->capture_default_str();
  app.add_option("--restarts", o.restarts, "SIGKILL + restart of qnetd during the run")
      ->capture_default_str();
  app.add_option("--lease-seconds", o.lease_seconds, "qnetd --lease-seconds")
      ->capture_default_str();
  app.add_option("--max-attempts", o.max_attempts, "qnetd --max-attempts")->capture_default_str();
  app.add_option("--timeout-seconds", timeout_seconds, "bound on the whole run")
      ->capture_default_str();
  app.add_option("--max-rss-mib", max_rss_mib, "fail when qnetd's peak RSS exceeds this")
      ->capture_default_str();
  app.add_option("--max-fds", max_fds, "fail when qnetd's open descriptors exceed this")
      ->capture_default_str();
  app.add_flag("--keep", keep, "keep the work folder (qnetd.log, data) afterwards");
  CLI11_PARSE(app, argc, argv);
  o.timeout = absl::Seconds(timeout_seconds);
  const bool temp = o.work_dir.empty();
  if (temp) {
    std::string pattern = (std::filesystem::temp_directory_path() / "qnet-load-XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) {
      std::fprintf(stderr, "cannot create a temp folder\n");
      return 1;
    }
    o.work_dir = pattern;
  }

  absl::StatusOr<qnet::load::LoadReport> report = qnet::load::RunLoad(o);
  if (!report.ok()) {
    std::fprintf(stderr, "load run failed: %s\n(work folder %s)\n",
                 report.status().ToString().c_str(), o.work_dir.c_str());
    return 1;
  }
  std::vector<std::string> failures = report->violations;
  const double rss_mib = static_cast<double>(report->peak_rss_bytes) / (1 << 20);
  if (rss_mib > max_rss_mib) {
    failures.push_back(absl::StrCat("qnetd peak RSS ", rss_mib, " MiB > ", max_rss_mib, " MiB"));
  }
  if (report->peak_fds > max_fds) {
    failures.push_back(absl::StrCat("qnetd peak open fds ", report->peak_fds, " > ", max_fds));
  }
  if (report->restarts != o.restarts) {
    failures.push_back(absl::StrCat(report->restarts, " restarts of ", o.restarts));
  }
  std::printf(
      "jobs %lld (succeeded %lld, failed %lld), clients %d, workers %d, restarts %d (longest "
      "outage %.2f s)\n"
      "wall %.1f s, %.0f jobs/s, leases %lld (lost to a kill %lld), transient errors retried "
      "%lld, ambiguous reports %lld\n"
      "qnetd peak RSS %.1f MiB, peak open fds %d, peak threads %d\n",
      static_cast<long long>(report->jobs), static_cast<long long>(report->succeeded),
      static_cast<long long>(report->failed), o.clients, o.workers, report->restarts,
      report->longest_outage_seconds, report->wall_seconds, report->jobs_per_second,
      static_cast<long long>(report->leases), static_cast<long long>(report->leases_lost),
      static_cast<long long>(report->transient_errors),
      static_cast<long long>(report->ambiguous_reports), rss_mib, report->peak_fds,
      report->peak_threads);
  for (const std::string& f : failures) std::printf("FAIL: %s\n", f.c_str());
  if (failures.empty()) std::printf("OK: every job ended exactly once\n");
  if (temp && !keep && failures.empty()) std::filesystem::remove_all(o.work_dir);
  if (!failures.empty() || keep) std::printf("work folder: %s\n", o.work_dir.c_str());
  return failures.empty() ? 0 : 1;
}
