// Per-owner quotas of the Scheduler with a fake clock over a real SqliteJobStore: queued-jobs cap
// and submit rate (RESOURCE_EXHAUSTED naming the limit, its flag and the use), the running-jobs
// cap (jobs wait in the queue), exempt owners, counts rebuilt on restart; the token buckets; and
// Delete of finished jobs.
#include <memory>
#include <string>
#include <thread>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/scheduling/scheduler.h"
#include "server/scheduling/token_buckets.h"
#include "server/store/sqlite_job_store.h"
#include "tests/server/test_util.h"

namespace qnet::server {
namespace {

using testing::FakeClock;
using ::testing::HasSubstr;
using testing::TempDir;

TEST(TokenBucketsTest, BurstsAMinutesWorthThenKeepsToTheRate) {
  FakeClock clock;
  TokenBuckets buckets(/*per_minute=*/3, &clock);
  for (int i = 0; i < 3; ++i) EXPECT_FALSE(buckets.Take("alice").has_value()) << i;
  std::optional<absl::Duration> wait = buckets.Take("alice");
  ASSERT_TRUE(wait.has_value());
  EXPECT_EQ(*wait, absl::Seconds(20));
  EXPECT_FALSE(buckets.Take("bob").has_value());  // one bucket per key
  clock.Advance(absl::Seconds(19));
  EXPECT_TRUE(buckets.Take("alice").has_value());
  clock.Advance(absl::Seconds(2));
  EXPECT_FALSE(buckets.Take("alice").has_value());
  // A long pause refills no more than a minute's worth.
  clock.Advance(absl::Hours(1));
  for (int i = 0; i < 3; ++i) EXPECT_FALSE(buckets.Take("alice").has_value()) << i;
  EXPECT_TRUE(buckets.Take("alice").has_value());
}

class QuotaTest : public ::testing::Test {
 protected:
  void SetUp() override { Open(); }

  void Open() {
    auto store = SqliteJobStore::Open(dir_ / "jobs.db");
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
    options_.quotas.exempt = [](absl::string_view owner) { return owner == "root"; };
    scheduler_ = std::make_unique<Scheduler>(store_.get(), &clock_, options_);
    ASSERT_TRUE(scheduler_->Recover().ok());
  }

  void Restart() {
    scheduler_.reset();
    store_.reset();
    Open();
  }

  absl::StatusOr<qnet::v1::Job> Submit(const std::string& owner) {
    qnet::v1::JobSpec spec;
    spec.set_model("zoo:lenet5");
    spec.set_dataset("fashion-mnist");
    return scheduler_->Submit(spec, "", owner);
  }

  // The owner of the job the next Acquire leases; "" when none is leasable.
  std::string AcquireOwner(Lease* lease = nullptr) {
    auto got = scheduler_->Acquire("w", "cpu", absl::ZeroDuration());
    EXPECT_TRUE(got.ok()) << got.status();
    if (!got.ok() || !got->has_value()) return "";
    if (lease != nullptr) *lease = **got;
    return (*got)->job.owner();
  }

  TempDir dir_;
  FakeClock clock_;
  SchedulerOptions options_;
  std::unique_ptr<SqliteJobStore> store_;
  std::unique_ptr<Scheduler> scheduler_;
};

TEST_F(QuotaTest, QueuedJobsCapRefusesSubmitsAndHoldsAcrossRestarts) {
  options_.quotas.queued_jobs = 2;
  Restart();
  ASSERT_TRUE(Submit("alice").ok());
  ASSERT_TRUE(Submit("alice").ok());
  auto refused = Submit("alice");
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(refused.status().message()),
              HasSubstr("alice has 2 queued jobs and the limit is 2 (qnetd --quota-queued-jobs)"));
  EXPECT_TRUE(Submit("bob").ok());  // per owner
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(Submit("root").ok()) << "exempt";
  Restart();  // the counts come back from the store
  EXPECT_EQ(Submit("alice").status().code(), absl::StatusCode::kResourceExhausted);
  // A job that starts leaves the queue: room again.
  std::string leased;
  while ((leased = AcquireOwner()) != "alice") ASSERT_FALSE(leased.empty());
  EXPECT_TRUE(Submit("alice").ok());
}

TEST_F(QuotaTest, RunningJobsCapKeepsTheOwnersOtherJobsQueued) {
  options_.quotas.running_jobs = 1;
  Restart();
  const std::string a1 = Submit("alice")->id();
  const std::string a2 = Submit("alice")->id();
  ASSERT_TRUE(Submit("bob").ok());
  Lease first;
  EXPECT_EQ(AcquireOwner(&first), "alice");
  EXPECT_EQ(first.job.id(), a1);
  EXPECT_EQ(AcquireOwner(), "bob");  // alice's second waits behind her running one
  EXPECT_EQ(AcquireOwner(), "");
  Restart();  // a1 is still running after a restart: a2 still waits
  EXPECT_EQ(AcquireOwner(), "");
  ASSERT_TRUE(scheduler_->Complete(a1, first.token, {}, {}).ok());
  Lease second;
  EXPECT_EQ(AcquireOwner(&second), "alice");
  EXPECT_EQ(second.job.id(), a2);
  // A long-poll waiting for work wakes when the owner's running job ends.
  const std::string a3 = Submit("alice")->id();
  std::thread finisher(
      [&] { ASSERT_TRUE(scheduler_->Fail(a2, second.token, "x", false, false).ok()); });
  auto waited = scheduler_->Acquire("w", "cpu", absl::Seconds(10));
  finisher.join();
  ASSERT_TRUE(waited.ok() && waited->has_value());
  EXPECT_EQ((*waited)->job.id(), a3);
}

TEST_F(QuotaTest, SubmitRateRefusesBeyondTheBurstUntilTokensRefill) {
  options_.quotas.submits_per_minute = 2;
  Restart();
  ASSERT_TRUE(Submit("alice").ok());
  ASSERT_TRUE(Submit("alice").ok());
  auto refused = Submit("alice");
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(refused.status().message()),
              HasSubstr("alice used all 2 submits per minute (qnetd --quota-submits-per-minute); "
                        "the next is allowed in 30s"));
  EXPECT_TRUE(Submit("root").ok());
  clock_.Advance(absl::Seconds(30));
  EXPECT_TRUE(Submit("alice").ok());
}

TEST_F(QuotaTest, DeleteRemovesFinishedJobsOnlyDurably) {
  auto queued = scheduler_->Submit(qnet::v1::JobSpec(), "req-1", "alice");
  ASSERT_TRUE(queued.ok());
  auto refused = scheduler_->Delete(queued->id());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(refused.status().message()), HasSubstr("cancel it first"));
  ASSERT_TRUE(scheduler_->Cancel(queued->id()).ok());
  auto deleted = scheduler_->Delete(queued->id());
  ASSERT_TRUE(deleted.ok()) << deleted.status();
  EXPECT_EQ(deleted->state(), qnet::v1::CANCELLED);
  EXPECT_EQ(scheduler_->Get(queued->id()).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(scheduler_->Delete(queued->id()).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(scheduler_->Stats().jobs[qnet::v1::CANCELLED], 0);
  Restart();
  EXPECT_EQ(scheduler_->Get(queued->id()).status().code(), absl::StatusCode::kNotFound);
  // Its request id names a new job now.
  auto again = scheduler_->Submit(qnet::v1::JobSpec(), "req-1", "alice");
  ASSERT_TRUE(again.ok());
  EXPECT_NE(again->id(), queued->id());
}

}  // namespace
}  // namespace qnet::server
