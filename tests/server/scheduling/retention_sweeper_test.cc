// RetentionSweeper and BlobCollector with a fake clock over a real job store, blob store and
// grants log in a temp folder: finished jobs expire after the retention period, a finished job's
// checkpoints go at once, its artifacts once it is deleted, unused uploads after the grace period,
// and nothing a live job or dataset uses; removed blobs give their uploaders their quota back;
// the disk gauges follow.
#include "server/scheduling/retention_sweeper.h"

#include <memory>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/store/sqlite_job_store.h"
#include "tests/server/test_util.h"

namespace qnet::server {
namespace {

using testing::FakeClock;
using ::testing::HasSubstr;
using testing::TempDir;

class RetentionSweeperTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto store = SqliteJobStore::Open(dir_ / "jobs.db");
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
    scheduler_ = std::make_unique<Scheduler>(store_.get(), &clock_, SchedulerOptions{});
    ASSERT_TRUE(scheduler_->Recover().ok());
    auto blobs = BlobStore::Open(dir_ / "blobs", 1 << 20);
    ASSERT_TRUE(blobs.ok());
    blobs_ = *std::move(blobs);
    auto grants = BlobGrants::Open(dir_ / "grants.log", blobs_.get());
    ASSERT_TRUE(grants.ok());
    grants_ = *std::move(grants);
    sweeper_ = std::make_unique<RetentionSweeper>(
        scheduler_.get(), store_.get(), blobs_.get(), grants_.get(),
        [this] { return dataset_digests_; }, &clock_,
        RetentionOptions{.keep_finished = absl::Hours(24), .upload_grace = absl::Hours(1)},
        &metrics_);
  }

  // A blob stored now, granted to `identity` for `job` ("" = its own upload; no identity: none).
  std::string Put(const std::string& content, const std::string& identity = "",
                  const std::string& job = "") {
    auto upload = blobs_->StartUpload(0, "");
    EXPECT_TRUE(upload.ok() && (*upload)->Append(content).ok());
    const std::string digest = (*upload)->Commit()->digest;
    if (!identity.empty()) {
      EXPECT_TRUE(grants_->Grant(digest, identity, job).ok());
    }
    return digest;
  }

  RetentionSweeper::Result Sweep() {
    absl::StatusOr<RetentionSweeper::Result> r = sweeper_->Sweep();
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : RetentionSweeper::Result();
  }

  TempDir dir_;
  // Ahead of the files' times, as a clock is once a blob has been stored.
  FakeClock clock_{absl::Now() + absl::Minutes(1)};
  MetricsRegistry metrics_{"test"};
  std::unique_ptr<SqliteJobStore> store_;
  std::unique_ptr<Scheduler> scheduler_;
  std::unique_ptr<BlobStore> blobs_;
  std::unique_ptr<BlobGrants> grants_;
  std::vector<std::string> dataset_digests_;
  std::unique_ptr<RetentionSweeper> sweeper_;
};

TEST_F(RetentionSweeperTest, ExpiresFinishedJobsAndCollectsWhatNothingUses) {
  const std::string model = Put("model", "alice");
  const std::string unused = Put("unused upload", "alice");
  const std::string ungranted = Put("an admin's upload");
  const std::string dataset = Put("dataset", "alice");
  dataset_digests_ = {dataset};

  // A job that ran (checkpoint, then an artifact) and one still running with a checkpoint.
  qnet::v1::JobSpec spec;
  spec.set_model(model);
  const std::string done = scheduler_->Submit(spec, "", "alice")->id();
  const Lease lease = **scheduler_->Acquire("w", "cpu", absl::ZeroDuration(), {}, "gpu");
  const std::string old_checkpoint = Put("checkpoint 1", "gpu", done);
  ASSERT_TRUE(scheduler_->Heartbeat(done, lease.token, nullptr, old_checkpoint).ok());
  const std::string artifact = Put("artifact", "gpu", done);
  ASSERT_TRUE(grants_->Grant(artifact, "alice", done).ok());
  google::protobuf::RepeatedPtrField<qnet::v1::Artifact> artifacts;
  artifacts.Add()->set_digest(artifact);
  ASSERT_TRUE(scheduler_->Complete(done, lease.token, {}, artifacts).ok());
  const std::string running = scheduler_->Submit(spec, "", "alice")->id();
  const Lease lease2 = **scheduler_->Acquire("w", "cpu", absl::ZeroDuration(), {}, "gpu");
  const std::string live_checkpoint = Put("checkpoint 2", "gpu", running);
  ASSERT_TRUE(scheduler_->Heartbeat(running, lease2.token, nullptr, live_checkpoint).ok());
  EXPECT_EQ(grants_->UploadedBytes("alice"), 5 + 13 + 7);

  // At once: only the finished job's checkpoint goes.
  RetentionSweeper::Result r = Sweep();
  EXPECT_EQ(r.jobs_deleted, 0);
  EXPECT_EQ(r.blobs_removed, 1);
  EXPECT_FALSE(blobs_->Contains(old_checkpoint));
  EXPECT_TRUE(grants_->HoldersOf(old_checkpoint).empty());
  for (const std::string& kept : {model, unused, ungranted, dataset, artifact, live_checkpoint}) {
    EXPECT_TRUE(blobs_->Contains(kept)) << kept;
  }

  // After the grace period: the uploads nothing uses, and the quota they took comes back.
  clock_.Advance(absl::Hours(2));
  r = Sweep();
  EXPECT_EQ(r.blobs_removed, 2);
  EXPECT_FALSE(blobs_->Contains(unused));
  EXPECT_FALSE(blobs_->Contains(ungranted));
  EXPECT_EQ(grants_->UploadedBytes("alice"), 5 + 7);

  // After the retention period: the finished job, then its artifact; never the running job, its
  // model and checkpoint, or the dataset.
  clock_.Advance(absl::Hours(24));
  r = Sweep();
  EXPECT_EQ(r.jobs_deleted, 1);
  EXPECT_EQ(scheduler_->Get(done).status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(scheduler_->Get(running).ok());
  EXPECT_FALSE(blobs_->Contains(artifact));
  EXPECT_TRUE(blobs_->Contains(model));  // the running job still uses it
  EXPECT_TRUE(blobs_->Contains(live_checkpoint));
  EXPECT_TRUE(blobs_->Contains(dataset));
  EXPECT_EQ(blobs_->total_bytes(), 5 + 7 + 12);

  EXPECT_THAT(metrics_.Serialize(),
              HasSubstr("qnet_disk_bytes{store=\"blobs\"} " + std::to_string(5 + 7 + 12)));
  EXPECT_THAT(metrics_.Serialize(), HasSubstr("qnet_disk_bytes{store=\"jobs\"}"));
}

TEST_F(RetentionSweeperTest, ADeletedJobsArtifactsGoAtTheNextSweep) {
  const std::string id = scheduler_->Submit(qnet::v1::JobSpec(), "", "alice")->id();
  const Lease lease = **scheduler_->Acquire("w", "cpu", absl::ZeroDuration(), {}, "gpu");
  const std::string artifact = Put("artifact", "gpu", id);
  google::protobuf::RepeatedPtrField<qnet::v1::Artifact> artifacts;
  artifacts.Add()->set_digest(artifact);
  ASSERT_TRUE(scheduler_->Complete(id, lease.token, {}, artifacts).ok());
  EXPECT_EQ(Sweep().blobs_removed, 0);
  ASSERT_TRUE(scheduler_->Delete(id).ok());
  EXPECT_EQ(Sweep().blobs_removed, 1);
  EXPECT_FALSE(blobs_->Contains(artifact));
}

}  // namespace
}  // namespace qnet::server
