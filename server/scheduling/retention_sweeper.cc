#include "server/scheduling/retention_sweeper.h"

#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/match.h"
#include "server/scheduling/proto_time.h"
#include "spdlog/spdlog.h"

namespace qnet::server {
namespace {

constexpr int kPageSize = 500;

bool Finished(qnet::v1::JobState state) {
  return state == qnet::v1::SUCCEEDED || state == qnet::v1::FAILED || state == qnet::v1::CANCELLED;
}

}  // namespace

RetentionSweeper::RetentionSweeper(Scheduler* scheduler, JobStore* store, const BlobStore* blobs,
                                   BlobGrants* grants,
                                   std::function<std::vector<std::string>()> dataset_digests,
                                   const Clock* clock, RetentionOptions options,
                                   MetricsRegistry* metrics)
    : scheduler_(scheduler),
      store_(store),
      blobs_(blobs),
      dataset_digests_(std::move(dataset_digests)),
      clock_(clock),
      options_(options),
      collector_(blobs, grants, options.upload_grace) {
  if (metrics != nullptr) {
    auto& family = prometheus::BuildGauge()
                       .Name("qnet_disk_bytes")
                       .Help("Bytes qnetd's stores take on disk: blobs, or the job store")
                       .Register(metrics->registry());
    blob_bytes_ = &family.Add({{"store", "blobs"}});
    job_store_bytes_ = &family.Add({{"store", "jobs"}});
  }
}

RetentionSweeper::~RetentionSweeper() { Stop(); }

absl::StatusOr<RetentionSweeper::Result> RetentionSweeper::Sweep() {
  const absl::Time start = clock_->Now();
  const bool expire = options_.keep_finished > absl::ZeroDuration();
  const absl::Time cutoff = start - options_.keep_finished;
  Result result;
  absl::flat_hash_set<std::string> live;
  absl::flat_hash_set<std::string> active;
  for (int64_t before = 0;;) {
    absl::StatusOr<JobPage> page = store_->List(qnet::v1::JOB_STATE_UNSPECIFIED, before, kPageSize);
    if (!page.ok()) return page.status();
    for (const JobRecord& r : page->records) {
      const qnet::v1::Job& job = r.job;
      const bool finished = Finished(job.state());
      if (finished && expire && FromTimestamp(job.end_time()) < cutoff) {
        absl::StatusOr<qnet::v1::Job> deleted = scheduler_->Delete(job.id());
        if (deleted.ok()) {
          ++result.jobs_deleted;
          continue;
        }
        spdlog::warn("retention: job {} kept: {}", job.id(), deleted.status().ToString());
      }
      if (!finished) active.insert(job.id());
      if (absl::StartsWith(job.spec().model(), "sha256:")) live.insert(job.spec().model());
      for (const qnet::v1::Artifact& a : job.artifacts()) live.insert(a.digest());
      if (!finished && !job.checkpoint_digest().empty()) live.insert(job.checkpoint_digest());
    }
    if (page->next_before_seq == 0) break;
    before = page->next_before_seq;
  }
  for (std::string& digest : dataset_digests_()) live.insert(std::move(digest));
  absl::StatusOr<BlobCollector::Result> collected =
      collector_.Collect(live, active, start, clock_->Now());
  if (!collected.ok()) return collected.status();
  result.blobs_removed = collected->blobs_removed;
  result.bytes_removed = collected->bytes_removed;
  if (result.jobs_deleted > 0 || result.blobs_removed > 0) {
    spdlog::info("retention: {} finished job(s) deleted, {} blob(s) ({} bytes) removed",
                 result.jobs_deleted, result.blobs_removed, result.bytes_removed);
  }
  RefreshDiskGauges();
  return result;
}

void RetentionSweeper::RefreshDiskGauges() {
  if (blob_bytes_ == nullptr) return;
  blob_bytes_->Set(static_cast<double>(blobs_->total_bytes()));
  if (absl::StatusOr<int64_t> bytes = store_->DiskBytes(); bytes.ok()) {
    job_store_bytes_->Set(static_cast<double>(*bytes));
  }
}

void RetentionSweeper::Start() {
  std::lock_guard<std::mutex> lock(mu_);
  if (!thread_.joinable()) thread_ = std::thread([this] { Run(); });
}

void RetentionSweeper::Wake() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    woken_ = true;
  }
  cv_.notify_all();
}

void RetentionSweeper::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void RetentionSweeper::Run() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    lock.unlock();
    if (absl::StatusOr<Result> r = Sweep(); !r.ok()) {
      spdlog::warn("retention sweep: {}; trying again later", r.status().ToString());
    }
    lock.lock();
    cv_.wait_for(lock, absl::ToChronoMilliseconds(options_.interval),
                 [this] { return stop_ || woken_; });
    woken_ = false;
  }
}

}  // namespace qnet::server
