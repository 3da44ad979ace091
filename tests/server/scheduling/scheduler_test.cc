// Scheduler with a fake clock over a real SqliteJobStore in a temp folder: queue order, leases,
// expiry and retries, cancellation, stale tokens, restart recovery, long-polls and watches.
#include "server/scheduling/scheduler.h"

#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/store/sqlite_job_store.h"
#include "tests/server/test_util.h"

namespace qnet::server {
namespace {

using testing::FakeClock;
using ::testing::HasSubstr;
using testing::TempDir;

qnet::v1::JobSpec Spec(int priority = 0) {
  qnet::v1::JobSpec spec;
  spec.set_model("zoo:lenet5");
  spec.set_dataset("fashion-mnist");
  spec.set_weight_bits(2);
  spec.set_priority(priority);
  return spec;
}

class SchedulerTest : public ::testing::Test {
 protected:
  void SetUp() override { Open(); }

  void Open() {
    auto store = SqliteJobStore::Open(dir_ / "jobs.db");
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
    scheduler_ = std::make_unique<Scheduler>(store_.get(), &clock_, options_, &metrics_);
    ASSERT_TRUE(scheduler_->Recover().ok());
  }

  // Simulates a restart: a fresh scheduler over the reopened store.
  void Restart() {
    scheduler_.reset();
    store_.reset();
    Open();
  }

  qnet::v1::Job Submit(int priority = 0, const std::string& request_id = "") {
    auto job = scheduler_->Submit(Spec(priority), request_id);
    EXPECT_TRUE(job.ok()) << job.status();
    return job.ok() ? *job : qnet::v1::Job();
  }

  Lease Acquire(const std::string& worker = "w1") {
    auto lease = scheduler_->Acquire(worker, "cpu", absl::ZeroDuration());
    EXPECT_TRUE(lease.ok()) << lease.status();
    EXPECT_TRUE(lease.ok() && lease->has_value()) << "no job was queued";
    return lease.ok() && lease->has_value() ? **lease : Lease();
  }

  qnet::v1::Job Get(const std::string& id) {
    auto job = scheduler_->Get(id);
    EXPECT_TRUE(job.ok()) << job.status();
    return job.ok() ? *job : qnet::v1::Job();
  }

  TempDir dir_;
  FakeClock clock_;
  MetricsRegistry metrics_{"test"};
  SchedulerOptions options_{.lease_duration = absl::Seconds(30), .max_attempts = 3};
  std::unique_ptr<SqliteJobStore> store_;
  std::unique_ptr<Scheduler> scheduler_;
};

TEST_F(SchedulerTest, HigherPriorityFirstThenFifo) {
  const std::string a = Submit(0).id();
  const std::string b = Submit(5).id();
  const std::string c = Submit(0).id();
  const std::string d = Submit(5).id();
  const std::string e = Submit(-1).id();
  std::vector<std::string> order;
  for (int i = 0; i < 5; ++i) order.push_back(Acquire().job.id());
  EXPECT_EQ(order, (std::vector<std::string>{b, d, a, c, e}));
  auto none = scheduler_->Acquire("w1", "cpu", absl::ZeroDuration());
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());
}

TEST_F(SchedulerTest, SubmittedJobIsQueuedAndDurable) {
  qnet::v1::Job job = Submit(0, "req-1");
  EXPECT_EQ(job.state(), qnet::v1::QUEUED);
  EXPECT_EQ(job.attempt(), 1);
  EXPECT_THAT(job.id(), ::testing::StartsWith("j-"));
  EXPECT_TRUE(job.has_create_time());
  auto stored = store_->Get(job.id());  // durable before Submit returned
  ASSERT_TRUE(stored.ok() && stored->has_value());
  EXPECT_EQ((*stored)->job.request_id(), "req-1");
}

TEST_F(SchedulerTest, RepeatedRequestIdReturnsTheSameJob) {
  const qnet::v1::Job first = Submit(0, "req-1");
  const qnet::v1::Job again = Submit(3, "req-1");
  EXPECT_EQ(again.id(), first.id());
  EXPECT_EQ(again.spec().priority(), 0);
  EXPECT_NE(Submit(0, "req-2").id(), first.id());
  Restart();
  EXPECT_EQ(Submit(0, "req-1").id(), first.id());
  EXPECT_EQ(scheduler_->Stats().queued, 2);
}

TEST_F(SchedulerTest, ConcurrentSubmitsOfOneRequestIdMakeOneJob) {
  std::vector<std::thread> threads;
  std::vector<std::string> ids(8);
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&, i] { ids[i] = Submit(0, "same").id(); });
  }
  for (auto& t : threads) t.join();
  for (const std::string& id : ids) EXPECT_EQ(id, ids[0]);
  EXPECT_EQ(scheduler_->Stats().queued, 1);
}

TEST_F(SchedulerTest, ExpiredLeaseRequeuesWithNextAttemptKeepingCheckpoint) {
  const std::string id = Submit().id();
  Lease lease = Acquire("w1");
  EXPECT_EQ(lease.job.attempt(), 1);
  EXPECT_EQ(lease.expire_time, clock_.Now() + absl::Seconds(30));
  ASSERT_TRUE(scheduler_->Heartbeat(id, lease.token, {}, "sha256:ckpt").ok());
  clock_.Advance(absl::Seconds(29));
  EXPECT_EQ(scheduler_->ExpireLeases(), 0);
  clock_.Advance(absl::Seconds(2));
  EXPECT_EQ(scheduler_->ExpireLeases(), 1);
  qnet::v1::Job job = Get(id);
  EXPECT_EQ(job.state(), qnet::v1::QUEUED);
  EXPECT_EQ(job.attempt(), 2);
  EXPECT_EQ(job.checkpoint_digest(), "sha256:ckpt");
  EXPECT_TRUE(job.worker_id().empty());

  Lease second = Acquire("w2");
  EXPECT_EQ(second.job.id(), id);
  EXPECT_EQ(second.job.attempt(), 2);
  EXPECT_EQ(second.job.checkpoint_digest(), "sha256:ckpt");
  EXPECT_NE(second.token, lease.token);
  // The first worker's token is stale now.
  auto stale = scheduler_->Heartbeat(id, lease.token, {}, "");
  EXPECT_EQ(stale.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(stale.status().message()), HasSubstr("not current"));
}

TEST_F(SchedulerTest, FailsAfterMaxAttempts) {
  const std::string id = Submit().id();
  for (int attempt = 1; attempt <= 3; ++attempt) {
    Lease lease = Acquire();
    EXPECT_EQ(lease.job.attempt(), attempt);
    clock_.Advance(absl::Seconds(31));
    EXPECT_EQ(scheduler_->ExpireLeases(), 1);
  }
  qnet::v1::Job job = Get(id);
  EXPECT_EQ(job.state(), qnet::v1::FAILED);
  EXPECT_THAT(job.error(), HasSubstr("lease expired"));
  EXPECT_THAT(job.error(), HasSubstr("attempt 3 of 3"));
  EXPECT_TRUE(job.has_end_time());
  auto none = scheduler_->Acquire("w1", "cpu", absl::ZeroDuration());
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());
}

TEST_F(SchedulerTest, HeartbeatExtendsLease) {
  const std::string id = Submit().id();
  Lease lease = Acquire();
  clock_.Advance(absl::Seconds(20));
  qnet::v1::Progress progress;
  progress.set_epoch(2);
  progress.set_images_per_second(1234.5);
  auto reply = scheduler_->Heartbeat(id, lease.token, &progress, "");
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_FALSE(reply->cancel_requested);
  EXPECT_EQ(reply->expire_time, clock_.Now() + absl::Seconds(30));
  clock_.Advance(absl::Seconds(20));  // 40 s after the lease started, 20 s after the heartbeat
  EXPECT_EQ(scheduler_->ExpireLeases(), 0);
  EXPECT_EQ(Get(id).state(), qnet::v1::RUNNING);
  EXPECT_EQ(Get(id).progress().epoch(), 2);
  ASSERT_TRUE(scheduler_->Heartbeat(id, lease.token, nullptr, "").ok());  // keeps the progress
  EXPECT_EQ(Get(id).progress().epoch(), 2);
  clock_.Advance(absl::Seconds(29));
  EXPECT_EQ(scheduler_->ExpireLeases(), 0);
  clock_.Advance(absl::Seconds(2));  // 31 s after the last heartbeat
  EXPECT_EQ(scheduler_->ExpireLeases(), 1);
  EXPECT_EQ(Get(id).state(), qnet::v1::QUEUED);
}

TEST_F(SchedulerTest, StaleAndUnknownTokensAreFailedPrecondition) {
  const std::string id = Submit().id();
  Lease lease = Acquire();
  EXPECT_EQ(scheduler_->Heartbeat(id, "not-the-token", {}, "").status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(scheduler_->Complete(id, "not-the-token", {}, {}).code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(scheduler_->Fail(id, "", "x", true, false).code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(scheduler_->Heartbeat("j-unknown", lease.token, {}, "").status().code(),
            absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(scheduler_->Complete(id, lease.token, {}, {}).ok());
  // Completing twice: the lease ended with the job.
  absl::Status again = scheduler_->Complete(id, lease.token, {}, {});
  EXPECT_EQ(again.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(again.message()), HasSubstr("SUCCEEDED"));
}

TEST_F(SchedulerTest, CompleteStoresMetricsAndArtifacts) {
  const std::string id = Submit().id();
  Lease lease = Acquire();
  qnet::v1::Metrics m;
  m.set_quantized_top1(0.87);
  google::protobuf::RepeatedPtrField<qnet::v1::Artifact> artifacts;
  artifacts.Add()->set_kind("onnx");
  ASSERT_TRUE(scheduler_->Complete(id, lease.token, m, artifacts).ok());
  Restart();
  qnet::v1::Job job = Get(id);
  EXPECT_EQ(job.state(), qnet::v1::SUCCEEDED);
  EXPECT_DOUBLE_EQ(job.metrics().quantized_top1(), 0.87);
  ASSERT_EQ(job.artifacts_size(), 1);
  EXPECT_EQ(job.artifacts(0).kind(), "onnx");
  EXPECT_TRUE(job.has_start_time());
  EXPECT_TRUE(job.has_end_time());
}

TEST_F(SchedulerTest, FailRetryableRequeuesAndNonRetryableFails) {
  const std::string a = Submit().id();
  Lease lease = Acquire();
  ASSERT_TRUE(scheduler_->Fail(a, lease.token, "CUDA out of memory", true, false).ok());
  EXPECT_EQ(Get(a).state(), qnet::v1::QUEUED);
  EXPECT_EQ(Get(a).attempt(), 2);
  lease = Acquire();
  ASSERT_TRUE(scheduler_->Fail(a, lease.token, "model has no Conv2d", false, false).ok());
  EXPECT_EQ(Get(a).state(), qnet::v1::FAILED);
  EXPECT_EQ(Get(a).error(), "model has no Conv2d");
}

TEST_F(SchedulerTest, CancelQueuedJobNow) {
  const std::string id = Submit().id();
  auto cancelled = scheduler_->Cancel(id);
  ASSERT_TRUE(cancelled.ok()) << cancelled.status();
  EXPECT_EQ(cancelled->state(), qnet::v1::CANCELLED);
  EXPECT_EQ(Get(id).state(), qnet::v1::CANCELLED);
  auto none = scheduler_->Acquire("w1", "cpu", absl::ZeroDuration());
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());
  auto again = scheduler_->Cancel(id);
  EXPECT_EQ(again.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(again.status().message()), HasSubstr("already ended"));
  EXPECT_EQ(scheduler_->Cancel("j-nope").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(SchedulerTest, CancelRunningJobGoesThroughTheWorker) {
  const std::string id = Submit().id();
  Lease lease = Acquire();
  auto requested = scheduler_->Cancel(id);
  ASSERT_TRUE(requested.ok());
  EXPECT_EQ(requested->state(), qnet::v1::RUNNING);
  EXPECT_TRUE(requested->cancel_requested());
  auto reply = scheduler_->Heartbeat(id, lease.token, {}, "");
  ASSERT_TRUE(reply.ok());
  EXPECT_TRUE(reply->cancel_requested);
  ASSERT_TRUE(scheduler_->Fail(id, lease.token, "", false, /*cancelled=*/true).ok());
  EXPECT_EQ(Get(id).state(), qnet::v1::CANCELLED);
}

TEST_F(SchedulerTest, CancelRequestedJobWhoseLeaseExpiresIsCancelled) {
  const std::string id = Submit().id();
  Acquire();
  ASSERT_TRUE(scheduler_->Cancel(id).ok());
  clock_.Advance(absl::Seconds(31));
  EXPECT_EQ(scheduler_->ExpireLeases(), 1);
  EXPECT_EQ(Get(id).state(), qnet::v1::CANCELLED);
}

TEST_F(SchedulerTest, QueueLimitIsResourceExhausted) {
  options_.max_queued = 2;
  Restart();
  Submit();
  Submit();
  auto full = scheduler_->Submit(Spec(), "");
  EXPECT_EQ(full.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(full.status().message()), HasSubstr("--max-queued"));
  Acquire();  // one leaves the queue: room again
  EXPECT_TRUE(scheduler_->Submit(Spec(), "").ok());
}

TEST_F(SchedulerTest, RestartKeepsQueueAndLeasesUntilTheyExpire) {
  const std::string a = Submit(0).id();
  const std::string b = Submit(0).id();
  const std::string c = Submit(9).id();
  Lease lease = Acquire();  // c
  ASSERT_EQ(lease.job.id(), c);
  Restart();
  SchedulerStats stats = scheduler_->Stats();
  EXPECT_EQ(stats.queued, 2);
  EXPECT_EQ(stats.jobs[qnet::v1::RUNNING], 1);
  // The worker that held the lease carries on with its token.
  ASSERT_TRUE(scheduler_->Heartbeat(c, lease.token, {}, "").ok());
  EXPECT_EQ(Acquire().job.id(), a);
  // ...until it stops heart-beating: then c is re-queued for attempt 2.
  clock_.Advance(absl::Seconds(31));
  EXPECT_EQ(scheduler_->ExpireLeases(), 2);  // c and a
  Restart();
  EXPECT_EQ(Get(c).state(), qnet::v1::QUEUED);
  EXPECT_EQ(Get(c).attempt(), 2);
  EXPECT_EQ(Acquire().job.id(), c);  // priority 9 first
  EXPECT_EQ(Acquire().job.id(), a);
  EXPECT_EQ(Acquire().job.id(), b);
}

TEST_F(SchedulerTest, ListOverlaysLiveState) {
  for (int i = 0; i < 5; ++i) Submit();
  const std::string leased = Acquire().job.id();
  auto all = scheduler_->List(qnet::v1::JOB_STATE_UNSPECIFIED, 0, 3);
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->jobs.size(), 3u);
  EXPECT_NE(all->next_before_seq, 0);
  auto running = scheduler_->List(qnet::v1::RUNNING, 0, 10);
  ASSERT_TRUE(running.ok());
  ASSERT_EQ(running->jobs.size(), 1u);
  EXPECT_EQ(running->jobs[0].id(), leased);
}

TEST_F(SchedulerTest, ListPagesAreBoundedByBytesAndContinueWhereTheyStopped) {
  // Ten finished jobs of about a MiB each: more than one page holds by bytes.
  qnet::v1::Metrics big;
  for (int i = 0; i < 1000; ++i) big.add_class_names(std::string(1000, 'c'));
  std::set<std::string> submitted;
  for (int i = 0; i < 10; ++i) {
    submitted.insert(Submit().id());
    Lease lease = Acquire();
    ASSERT_TRUE(scheduler_->Complete(lease.job.id(), lease.token, big, {}).ok());
  }
  std::set<std::string> listed;
  int64_t before_seq = 0;
  int pages = 0;
  do {
    auto page = scheduler_->List(qnet::v1::JOB_STATE_UNSPECIFIED, before_seq, 500);
    ASSERT_TRUE(page.ok()) << page.status();
    ASSERT_FALSE(page->jobs.empty());
    size_t bytes = 0;
    for (const qnet::v1::Job& job : page->jobs) {
      bytes += job.ByteSizeLong();
      EXPECT_TRUE(listed.insert(job.id()).second) << job.id() << " listed twice";
    }
    EXPECT_LE(bytes, Scheduler::kMaxPageBytes);
    before_seq = page->next_before_seq;
    ++pages;
  } while (before_seq != 0);
  EXPECT_GE(pages, 3);
  EXPECT_EQ(listed, submitted);
}

TEST_F(SchedulerTest, FinishedJobsEvictedFromMemoryAreStillFound) {
  options_.finished_cache_size = 1;
  Restart();
  const std::string a = Submit().id();
  const std::string b = Submit().id();
  ASSERT_TRUE(scheduler_->Cancel(a).ok());
  ASSERT_TRUE(scheduler_->Cancel(b).ok());  // evicts a from the cache
  EXPECT_EQ(Get(a).state(), qnet::v1::CANCELLED);
  auto snap = scheduler_->WaitForChange(a, 0, absl::Now());
  ASSERT_TRUE(snap.ok());
  EXPECT_EQ(snap->job.state(), qnet::v1::CANCELLED);
}

TEST_F(SchedulerTest, LongPollWakesOnSubmit) {
  std::optional<Lease> got;
  std::thread poller([&] {
    auto lease = scheduler_->Acquire("w1", "cpu", absl::Seconds(10));
    if (lease.ok() && lease->has_value()) got = **lease;
  });
  // The poller is inside Acquire (it has been seen) before the job comes.
  EXPECT_TRUE(testing::WaitFor([&] { return scheduler_->Stats().workers_idle == 1; }));
  const absl::Time start = absl::Now();
  const std::string id = Submit().id();
  poller.join();
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->job.id(), id);
  EXPECT_LT(absl::Now() - start, absl::Seconds(2));
}

TEST_F(SchedulerTest, LongPollReturnsEmptyAfterWaitAndUnavailableOnShutdown) {
  const absl::Time start = absl::Now();
  auto none = scheduler_->Acquire("w1", "cpu", absl::Milliseconds(300));
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(250));

  absl::Status status;
  std::thread poller(
      [&] { status = scheduler_->Acquire("w2", "cpu", absl::Seconds(30)).status(); });
  EXPECT_TRUE(testing::WaitFor([&] { return scheduler_->Stats().workers_idle == 2; }));
  scheduler_->Shutdown();
  poller.join();
  EXPECT_TRUE(absl::IsUnavailable(status));
  EXPECT_TRUE(absl::IsUnavailable(scheduler_->Submit(Spec(), "").status()));
}

TEST_F(SchedulerTest, ChangesWakeOnlyTheirOwnJobsWatchers) {
  const std::string watched = Submit().id();
  auto first = scheduler_->WaitForChange(watched, 0, absl::Now());
  ASSERT_TRUE(first.ok());
  absl::StatusOr<JobSnapshot> next;
  std::thread watcher([&] {
    next = scheduler_->WaitForChange(watched, first->version, absl::Now() + absl::Seconds(30));
  });
  ASSERT_TRUE(testing::WaitFor([&] { return scheduler_->Stats().watchers == 1; }));
  // Other jobs come and go: a server with thousands of watch streams must not wake them all.
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(scheduler_->Cancel(Submit().id()).ok());
  }
  EXPECT_EQ(scheduler_->Stats().watch_wakeups, 0);
  EXPECT_EQ(scheduler_->Stats().watchers, 1);
  ASSERT_TRUE(scheduler_->Cancel(watched).ok());
  watcher.join();
  ASSERT_TRUE(next.ok());
  EXPECT_EQ(next->job.state(), qnet::v1::CANCELLED);
  EXPECT_EQ(scheduler_->Stats().watchers, 0);
}

TEST_F(SchedulerTest, WaitForChangeSeesEveryKindOfUpdate) {
  const std::string id = Submit().id();
  auto first = scheduler_->WaitForChange(id, 0, absl::Now() + absl::Seconds(5));
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(first->job.state(), qnet::v1::QUEUED);
  // Nothing changes: returns at the deadline with the same version.
  auto same = scheduler_->WaitForChange(id, first->version, absl::Now() + absl::Milliseconds(50));
  ASSERT_TRUE(same.ok());
  EXPECT_EQ(same->version, first->version);
  // A watcher records every job it is woken with; each change below is made only once the watcher
  // saw the one before, so a change it missed cannot hide behind a later one.
  absl::Mutex mu;
  std::vector<qnet::v1::Job> seen;
  std::thread watcher([&] {
    uint64_t version = first->version;
    while (true) {
      auto next = scheduler_->WaitForChange(id, version, absl::Now() + absl::Seconds(10));
      if (!next.ok() || next->version == version) return;  // the checks below then fail
      version = next->version;
      absl::MutexLock lock(&mu);
      seen.push_back(next->job);
      if (next->job.state() == qnet::v1::SUCCEEDED) return;
    }
  });
  auto wait_seen = [&](size_t n) {
    return testing::WaitFor([&] {
      absl::MutexLock lock(&mu);
      return seen.size() >= n;
    });
  };
  const Lease lease = Acquire();
  EXPECT_TRUE(wait_seen(1)) << "the lease was not seen";
  qnet::v1::Progress progress;
  progress.set_epoch(4);
  EXPECT_TRUE(scheduler_->Heartbeat(id, lease.token, &progress, "").ok());
  EXPECT_TRUE(wait_seen(2)) << "the heartbeat was not seen";
  EXPECT_TRUE(scheduler_->Complete(id, lease.token, {}, {}).ok());
  watcher.join();
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_EQ(seen[0].state(), qnet::v1::RUNNING);
  EXPECT_EQ(seen[0].worker_id(), "w1");
  EXPECT_FALSE(seen[0].has_progress());
  EXPECT_EQ(seen[1].state(), qnet::v1::RUNNING);
  EXPECT_EQ(seen[1].progress().epoch(), 4);
  EXPECT_EQ(seen[2].state(), qnet::v1::SUCCEEDED);
  EXPECT_EQ(scheduler_->WaitForChange("j-none", 0, absl::Now()).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(SchedulerTest, WorkersAreCountedBusyOrIdle) {
  Submit();
  Acquire("busy-worker");
  auto none = scheduler_->Acquire("idle-worker", "cpu", absl::ZeroDuration());
  ASSERT_TRUE(none.ok());
  SchedulerStats stats = scheduler_->Stats();
  EXPECT_EQ(stats.workers_busy, 1);
  EXPECT_EQ(stats.workers_idle, 1);
  clock_.Advance(absl::Seconds(31));  // the idle one has not been seen for a lease period
  scheduler_->ExpireLeases();
  stats = scheduler_->Stats();
  EXPECT_EQ(stats.workers_busy, 0);
}

}  // namespace
}  // namespace qnet::server
