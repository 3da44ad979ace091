// The scheduler over a store that refuses or holds writes on command: every transition (submit,
// lease, heartbeat, completion, failure, retry, cancel, lease expiry) either is stored and then
// seen, or fails UNAVAILABLE and changes nothing: memory and the store agree after each one, no
// reader or worker sees a change (a new job, a lease, a completion) before it is stored, and the
// refused call can simply be repeated.
#include <chrono>
#include <thread>

#include <google/protobuf/util/message_differencer.h>

#include "common/handoff.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/scheduling/scheduler.h"
#include "server/store/sqlite_job_store.h"
#include "tests/server/store/fault_injecting_job_store.h"
#include "tests/server/test_util.h"

namespace qnet::server {
namespace {

using ::testing::AllOf;
using testing::FakeClock;
using testing::FaultInjectingJobStore;
using ::testing::HasSubstr;
using testing::TempDir;

class SchedulerDurabilityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto sqlite = SqliteJobStore::Open(dir_ / "jobs.db");
    ASSERT_TRUE(sqlite.ok()) << sqlite.status();
    store_ = std::make_unique<FaultInjectingJobStore>(*std::move(sqlite));
    scheduler_ = std::make_unique<Scheduler>(store_.get(), &clock_, options_, &metrics_);
    ASSERT_TRUE(scheduler_->Recover().ok());
  }

  std::string Submit() {
    qnet::v1::JobSpec spec;
    spec.set_model("zoo:lenet5");
    spec.set_dataset("fashion-mnist");
    auto job = scheduler_->Submit(spec, "");
    EXPECT_TRUE(job.ok()) << job.status();
    return job.ok() ? job->id() : "";
  }

  Lease Acquire() {
    auto lease = scheduler_->Acquire("w1", "cpu", absl::ZeroDuration());
    EXPECT_TRUE(lease.ok() && lease->has_value()) << lease.status();
    return lease.ok() && lease->has_value() ? **lease : Lease();
  }

  // Runs `read` while a store write is held. A read that waits for that write (a scheduler that
  // holds its lock across the store) fails the test naming `what`, and the write is let go so
  // the test ends instead of hanging until ctest's timeout.
  template <typename Read>
  auto WhileWriteHeld(const char* what, Read read) {
    Handoff<decltype(read())> result;
    std::thread reader([&] { result.Set(read()); });
    if (!result.ReadyWithin(std::chrono::seconds(5))) {
      ADD_FAILURE() << what << " waited for a held store write; readers must not";
      store_->ReleaseWrites();
    }
    reader.join();
    return result.Wait();
  }

  qnet::v1::Job Get(const std::string& id) {
    auto job = scheduler_->Get(id);
    EXPECT_TRUE(job.ok()) << job.status();
    return job.ok() ? *job : qnet::v1::Job();
  }

  // What the scheduler shows is exactly what is stored.
  void ExpectMemoryMatchesStore(const std::string& id) {
    auto stored = store_->inner().Get(id);
    ASSERT_TRUE(stored.ok() && stored->has_value()) << id << " is not stored";
    std::string diff;
    google::protobuf::util::MessageDifferencer differencer;
    differencer.ReportDifferencesToString(&diff);
    EXPECT_TRUE(differencer.Compare((*stored)->job, Get(id))) << "stored vs. memory:\n" << diff;
  }

  // The refusal a caller gets: UNAVAILABLE, saying nothing changed and in which state the job is.
  static void ExpectRefused(const absl::Status& s, const std::string& state) {
    EXPECT_TRUE(absl::IsUnavailable(s)) << s;
    EXPECT_THAT(std::string(s.message()),
                AllOf(HasSubstr("injected fault"), HasSubstr("nothing changed"),
                      HasSubstr("still " + state), HasSubstr("retry")));
  }

  TempDir dir_;
  FakeClock clock_;
  MetricsRegistry metrics_{"test"};
  SchedulerOptions options_{.lease_duration = absl::Seconds(30), .max_attempts = 3};
  std::unique_ptr<FaultInjectingJobStore> store_;
  std::unique_ptr<Scheduler> scheduler_;
};

TEST_F(SchedulerDurabilityTest, RefusedSubmitCreatesNoJobAndCanBeRepeated) {
  store_->FailWrites(1);
  qnet::v1::JobSpec spec;
  spec.set_model("zoo:lenet5");
  auto refused = scheduler_->Submit(spec, "req-1");
  EXPECT_TRUE(absl::IsUnavailable(refused.status())) << refused.status();
  EXPECT_THAT(std::string(refused.status().message()), HasSubstr("not created"));
  EXPECT_EQ(scheduler_->Stats().queued, 0);
  EXPECT_EQ(scheduler_->Stats().jobs[qnet::v1::QUEUED], 0);
  EXPECT_EQ(*store_->MaxSeq(), 0);
  auto none = scheduler_->Acquire("w1", "cpu", absl::ZeroDuration());
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());
  // The request_id is free again: the repeat creates the job.
  auto again = scheduler_->Submit(spec, "req-1");
  ASSERT_TRUE(again.ok()) << again.status();
  ExpectMemoryMatchesStore(again->id());
}

TEST_F(SchedulerDurabilityTest, RefusedLeaseLeavesTheJobQueuedForTheNextWorker) {
  const std::string id = Submit();
  store_->FailWrites(1);
  auto refused = scheduler_->Acquire("w1", "cpu", absl::ZeroDuration());
  ExpectRefused(refused.status(), "QUEUED");
  qnet::v1::Job job = Get(id);
  EXPECT_EQ(job.state(), qnet::v1::QUEUED);
  EXPECT_TRUE(job.worker_id().empty());
  EXPECT_FALSE(job.has_start_time());
  ExpectMemoryMatchesStore(id);
  EXPECT_EQ(scheduler_->Stats().queued, 1);
  EXPECT_EQ(scheduler_->Stats().workers_busy, 0);
  Lease lease = Acquire();
  EXPECT_EQ(lease.job.id(), id);
  EXPECT_EQ(lease.job.attempt(), 1);
  ExpectMemoryMatchesStore(id);
}

TEST_F(SchedulerDurabilityTest, RefusedHeartbeatKeepsTheStoredLeaseAndProgress) {
  const std::string id = Submit();
  const Lease lease = Acquire();
  clock_.Advance(absl::Seconds(20));
  qnet::v1::Progress progress;
  progress.set_epoch(3);
  store_->FailWrites(1);
  ExpectRefused(scheduler_->Heartbeat(id, lease.token, &progress, "sha256:ckpt").status(),
                "RUNNING");
  EXPECT_FALSE(Get(id).has_progress());
  EXPECT_TRUE(Get(id).checkpoint_digest().empty());
  ExpectMemoryMatchesStore(id);
  // The lease was not extended: it runs out when the stored one does.
  clock_.Advance(absl::Seconds(11));
  EXPECT_EQ(scheduler_->ExpireLeases(), 1);
  EXPECT_EQ(Get(id).state(), qnet::v1::QUEUED);
  ExpectMemoryMatchesStore(id);
}

TEST_F(SchedulerDurabilityTest, RefusedCompletionLeavesTheJobRunningAndLeased) {
  const std::string id = Submit();
  const Lease lease = Acquire();
  qnet::v1::Metrics metrics;
  metrics.set_quantized_top1(0.9);
  google::protobuf::RepeatedPtrField<qnet::v1::Artifact> artifacts;
  artifacts.Add()->set_kind("onnx");
  store_->FailWrites(1);
  ExpectRefused(scheduler_->Complete(id, lease.token, metrics, artifacts), "RUNNING");
  qnet::v1::Job job = Get(id);
  EXPECT_EQ(job.state(), qnet::v1::RUNNING);
  EXPECT_FALSE(job.has_end_time());
  EXPECT_EQ(job.artifacts_size(), 0);
  ExpectMemoryMatchesStore(id);
  EXPECT_EQ(scheduler_->Stats().jobs[qnet::v1::SUCCEEDED], 0);
  EXPECT_EQ(scheduler_->Stats().workers_busy, 1);
  // The worker still holds the lease: it heart-beats and repeats the completion.
  ASSERT_TRUE(scheduler_->Heartbeat(id, lease.token, nullptr, "").ok());
  ASSERT_TRUE(scheduler_->Complete(id, lease.token, metrics, artifacts).ok());
  EXPECT_EQ(Get(id).state(), qnet::v1::SUCCEEDED);
  EXPECT_EQ(Get(id).artifacts_size(), 1);
  ExpectMemoryMatchesStore(id);
}

TEST_F(SchedulerDurabilityTest, RefusedFailureReportsLeaveTheJobRunning) {
  const std::string id = Submit();
  const Lease lease = Acquire();
  struct Report {
    bool retryable;
    bool cancelled;
  };
  for (const Report r : {Report{true, false}, Report{false, false}, Report{false, true}}) {
    SCOPED_TRACE(absl::StrCat("retryable ", r.retryable, ", cancelled ", r.cancelled));
    store_->FailWrites(1);
    ExpectRefused(scheduler_->Fail(id, lease.token, "CUDA out of memory", r.retryable, r.cancelled),
                  "RUNNING");
    EXPECT_EQ(Get(id).state(), qnet::v1::RUNNING);
    EXPECT_EQ(Get(id).attempt(), 1);
    EXPECT_TRUE(Get(id).error().empty());
    ExpectMemoryMatchesStore(id);
  }
  EXPECT_EQ(scheduler_->Stats().queued, 0);
  // Repeated once the store is back: the retry happens.
  ASSERT_TRUE(scheduler_->Fail(id, lease.token, "CUDA out of memory", true, false).ok());
  EXPECT_EQ(Get(id).state(), qnet::v1::QUEUED);
  EXPECT_EQ(Get(id).attempt(), 2);
  ExpectMemoryMatchesStore(id);
}

TEST_F(SchedulerDurabilityTest, RefusedCancelChangesNeitherQueuedNorRunningJobs) {
  const std::string queued = Submit();
  store_->FailWrites(1);
  ExpectRefused(scheduler_->Cancel(queued).status(), "QUEUED");
  EXPECT_EQ(Get(queued).state(), qnet::v1::QUEUED);
  ExpectMemoryMatchesStore(queued);
  EXPECT_EQ(scheduler_->Stats().queued, 1);

  const Lease lease = Acquire();  // the same job, still queued
  ASSERT_EQ(lease.job.id(), queued);
  store_->FailWrites(1);
  ExpectRefused(scheduler_->Cancel(queued).status(), "RUNNING");
  EXPECT_FALSE(Get(queued).cancel_requested());
  ExpectMemoryMatchesStore(queued);
  auto reply = scheduler_->Heartbeat(queued, lease.token, nullptr, "");
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_FALSE(reply->cancel_requested);  // the worker is not told of a cancel never stored
  ASSERT_TRUE(scheduler_->Cancel(queued).ok());
  EXPECT_TRUE(Get(queued).cancel_requested());
  ExpectMemoryMatchesStore(queued);
}

TEST_F(SchedulerDurabilityTest, RefusedLeaseExpiryIsTriedAgainLater) {
  const std::string id = Submit();
  Acquire();
  clock_.Advance(absl::Seconds(31));
  store_->FailWrites(1);
  EXPECT_EQ(scheduler_->ExpireLeases(), 0);
  EXPECT_EQ(Get(id).state(), qnet::v1::RUNNING);
  EXPECT_EQ(Get(id).attempt(), 1);
  ExpectMemoryMatchesStore(id);
  EXPECT_EQ(scheduler_->ExpireLeases(), 1);
  EXPECT_EQ(Get(id).state(), qnet::v1::QUEUED);
  EXPECT_EQ(Get(id).attempt(), 2);
  ExpectMemoryMatchesStore(id);
}

TEST_F(SchedulerDurabilityTest, ReadersNeverSeeAChangeBeforeItIsStored) {
  const std::string id = Submit();
  const Lease lease = Acquire();
  auto before = scheduler_->WaitForChange(id, 0, absl::Now());
  ASSERT_TRUE(before.ok());
  store_->HoldWrites();
  absl::Status completed;
  std::thread worker([&] { completed = scheduler_->Complete(id, lease.token, {}, {}); });
  EXPECT_TRUE(testing::WaitFor([&] { return store_->held_writes() == 1; }));
  // The completion is on its way to the store, not in it: nobody may see it yet.
  EXPECT_EQ(Get(id).state(), qnet::v1::RUNNING);
  auto list = scheduler_->List(qnet::v1::SUCCEEDED, 0, 10);
  ASSERT_TRUE(list.ok());
  EXPECT_TRUE(list->jobs.empty());
  EXPECT_EQ(scheduler_->Stats().jobs[qnet::v1::SUCCEEDED], 0);
  auto unchanged = scheduler_->WaitForChange(id, before->version, absl::Now());
  ASSERT_TRUE(unchanged.ok());
  EXPECT_EQ(unchanged->version, before->version);
  store_->ReleaseWrites(/*fail=*/true);
  worker.join();
  ExpectRefused(completed, "RUNNING");
  EXPECT_EQ(Get(id).state(), qnet::v1::RUNNING);
  ExpectMemoryMatchesStore(id);
}

TEST_F(SchedulerDurabilityTest, NoReaderOrWorkerSeesASubmitOrLeaseBeforeItIsStored) {
  qnet::v1::JobSpec spec;
  spec.set_model("zoo:lenet5");
  store_->HoldWrites();
  absl::StatusOr<qnet::v1::Job> submitted, repeated;
  std::thread client([&] { submitted = scheduler_->Submit(spec, "req-1"); });
  EXPECT_TRUE(testing::WaitFor([&] { return store_->held_writes() == 1; }));
  // The new job is on its way to the store: it is not listed, counted or leased yet, and a
  // repeat of the request waits for it instead of making a second job.
  auto listed = WhileWriteHeld("List", [&] { return scheduler_->List(qnet::v1::QUEUED, 0, 10); });
  ASSERT_TRUE(listed.ok());
  EXPECT_TRUE(listed->jobs.empty());
  EXPECT_EQ(WhileWriteHeld("Stats", [&] { return scheduler_->Stats(); }).jobs[qnet::v1::QUEUED], 0);
  auto none = WhileWriteHeld(
      "Acquire", [&] { return scheduler_->Acquire("w1", "cpu", absl::ZeroDuration()); });
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value()) << "a job was leased before it was stored";
  std::thread repeat([&] { repeated = scheduler_->Submit(spec, "req-1"); });
  EXPECT_FALSE(
      testing::WaitFor([&] { return store_->held_writes() > 1; }, absl::Milliseconds(200)));
  store_->ReleaseWrites();
  client.join();
  repeat.join();
  ASSERT_TRUE(submitted.ok()) << submitted.status();
  ASSERT_TRUE(repeated.ok()) << repeated.status();
  const std::string id = submitted->id();
  EXPECT_EQ(repeated->id(), id);
  ExpectMemoryMatchesStore(id);

  // A lease on its way to the store: the job still reads QUEUED and no other worker gets it.
  store_->HoldWrites();
  absl::StatusOr<std::optional<Lease>> lease;
  std::thread worker([&] { lease = scheduler_->Acquire("w1", "cpu", absl::ZeroDuration()); });
  EXPECT_TRUE(testing::WaitFor([&] { return store_->held_writes() == 1; }));
  const qnet::v1::Job being_leased = WhileWriteHeld("GetJob", [&] { return Get(id); });
  EXPECT_EQ(being_leased.state(), qnet::v1::QUEUED);
  EXPECT_TRUE(being_leased.worker_id().empty());
  EXPECT_EQ(WhileWriteHeld("Stats", [&] { return scheduler_->Stats(); }).workers_busy, 0);
  auto other = WhileWriteHeld(
      "Acquire", [&] { return scheduler_->Acquire("w2", "cpu", absl::ZeroDuration()); });
  ASSERT_TRUE(other.ok());
  EXPECT_FALSE(other->has_value()) << "a job being leased was leased twice";
  store_->ReleaseWrites();
  worker.join();
  ASSERT_TRUE(lease.ok() && lease->has_value()) << lease.status();
  EXPECT_EQ((*lease)->job.id(), id);
  EXPECT_EQ(Get(id).state(), qnet::v1::RUNNING);
  EXPECT_EQ(Get(id).worker_id(), "w1");
  ExpectMemoryMatchesStore(id);
}

TEST_F(SchedulerDurabilityTest, ChangesOfOneJobAreStoredOneAfterTheOther) {
  const std::string id = Submit();
  const Lease lease = Acquire();
  store_->HoldWrites();
  qnet::v1::Progress progress;
  progress.set_epoch(2);
  absl::Status heartbeat;
  std::thread worker(
      [&] { heartbeat = scheduler_->Heartbeat(id, lease.token, &progress, "").status(); });
  EXPECT_TRUE(testing::WaitFor([&] { return store_->held_writes() == 1; }));
  // The cancel waits for the heartbeat to be stored and starts from that: no write of it is
  // queued meanwhile, and the stored job ends with both changes.
  absl::Status cancel;
  std::thread client([&] { cancel = scheduler_->Cancel(id).status(); });
  EXPECT_FALSE(
      testing::WaitFor([&] { return store_->held_writes() > 1; }, absl::Milliseconds(200)));
  store_->ReleaseWrites();
  worker.join();
  client.join();
  ASSERT_TRUE(heartbeat.ok()) << heartbeat;
  ASSERT_TRUE(cancel.ok()) << cancel;
  EXPECT_TRUE(Get(id).cancel_requested());
  EXPECT_EQ(Get(id).progress().epoch(), 2);
  ExpectMemoryMatchesStore(id);
}

}  // namespace
}  // namespace qnet::server
