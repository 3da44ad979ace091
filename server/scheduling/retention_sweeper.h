// RetentionSweeper: keeps the data folder from growing without bound. Each Sweep
//  1. deletes finished jobs that ended more than `keep_finished` ago (store first, like
//     Scheduler::Delete), unless keep_finished is zero;
//  2. gathers what is live from every stored job (model, artifacts; checkpoints of unfinished
//     jobs only) and every dataset, and hands it to the BlobCollector, which removes the rest
//     (blob_collector.h says when).
// qnetd runs Sweep on a thread every `interval`, and soon after a DeleteJob (Wake). It also
// exports the disk use gauge qnet_disk_bytes{store="blobs"|"jobs"} (RefreshDiskGauges, at every
// scrape). Time comes from the injected Clock, so tests sweep by hand after moving it.
//
//   RetentionSweeper sweeper(&scheduler, &store, &blobs, &grants, dataset_digests, &clock,
//                            {.keep_finished = absl::Hours(24 * 30)}, &metrics);
//   absl::StatusOr<RetentionSweeper::Result> r = sweeper.Sweep();
//   sweeper.Start();  ...  sweeper.Stop();
#ifndef QNET_SERVER_SCHEDULING_RETENTION_SWEEPER_H_
#define QNET_SERVER_SCHEDULING_RETENTION_SWEEPER_H_

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/blobs/blob_collector.h"
#include "server/blobs/blob_grants.h"
#include "server/blobs/blob_store.h"
#include "server/metrics/metrics_registry.h"
#include "server/scheduling/clock.h"
#include "server/scheduling/scheduler.h"
#include "server/store/job_store.h"

namespace qnet::server {

struct RetentionOptions {
  absl::Duration keep_finished = absl::Hours(24 * 30);  // zero: keep finished jobs for ever
  absl::Duration upload_grace = absl::Hours(24);        // unused uploads are kept this long
  absl::Duration interval = absl::Minutes(10);          // between sweeps on the thread
};

class RetentionSweeper {
 public:
  struct Result {
    int64_t jobs_deleted = 0;
    int64_t blobs_removed = 0;
    int64_t bytes_removed = 0;
  };

  // Every pointer must outlive the sweeper; `metrics` may be null. `dataset_digests` lists the
  // blobs of every dataset.
  RetentionSweeper(Scheduler* scheduler, JobStore* store, const BlobStore* blobs,
                   BlobGrants* grants, std::function<std::vector<std::string>()> dataset_digests,
                   const Clock* clock, RetentionOptions options, MetricsRegistry* metrics);
  ~RetentionSweeper();  // Stop()
  RetentionSweeper(const RetentionSweeper&) = delete;
  RetentionSweeper& operator=(const RetentionSweeper&) = delete;

  absl::StatusOr<Result> Sweep();
  // Sweeps on a thread every options.interval until Stop; Wake sweeps soon.
  void Start();
  void Wake();
  void Stop();

  void RefreshDiskGauges();

 private:
  void Run();

  Scheduler* const scheduler_;
  JobStore* const store_;
  const BlobStore* const blobs_;
  const std::function<std::vector<std::string>()> dataset_digests_;
  const Clock* const clock_;
  const RetentionOptions options_;
  BlobCollector collector_;
  prometheus::Gauge* blob_bytes_ = nullptr;
  prometheus::Gauge* job_store_bytes_ = nullptr;

  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  bool woken_ = false;
  std::thread thread_;
};

}  // namespace qnet::server

#endif  // QNET_SERVER_SCHEDULING_RETENTION_SWEEPER_H_
