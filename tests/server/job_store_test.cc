// SqliteJobStore: durability across reopen, request_id uniqueness, paging and filters, group
// commit.
#include "server/sqlite_job_store.h"

#include <set>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/server/test_util.h"

namespace qnet::server {
namespace {

using ::testing::HasSubstr;
using testing::TempDir;

JobRecord MakeRecord(int64_t seq, qnet::v1::JobState state, std::string request_id = "") {
  JobRecord r;
  r.seq = seq;
  r.job.set_id(absl::StrCat("j-", seq));
  r.job.set_state(state);
  r.job.set_request_id(std::move(request_id));
  r.job.mutable_spec()->set_model("zoo:lenet5");
  r.job.mutable_spec()->set_priority(static_cast<int32_t>(seq % 3));
  r.job.set_attempt(1);
  return r;
}

std::unique_ptr<SqliteJobStore> OpenOrDie(const std::string& path) {
  auto store = SqliteJobStore::Open(path);
  EXPECT_TRUE(store.ok()) << store.status();
  return store.ok() ? *std::move(store) : nullptr;
}

TEST(SqliteJobStoreTest, WritesSurviveReopen) {
  TempDir dir;
  {
    auto store = OpenOrDie(dir / "jobs.db");
    ASSERT_TRUE(store->Create(MakeRecord(1, qnet::v1::QUEUED, "req-1")).get().ok());
    JobRecord running = MakeRecord(2, qnet::v1::QUEUED);
    ASSERT_TRUE(store->Create(running).get().ok());
    running.job.set_state(qnet::v1::RUNNING);
    running.job.set_worker_id("w1");
    running.lease_token = "tok";
    running.lease_expire = absl::FromUnixMillis(1234567);
    ASSERT_TRUE(store->Save(running).get().ok());
  }  // closed without an explicit Close()
  auto store = OpenOrDie(dir / "jobs.db");
  auto got = store->Get("j-2");
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_TRUE(got->has_value());
  EXPECT_EQ((*got)->job.state(), qnet::v1::RUNNING);
  EXPECT_EQ((*got)->job.worker_id(), "w1");
  EXPECT_EQ((*got)->lease_token, "tok");
  EXPECT_EQ((*got)->lease_expire, absl::FromUnixMillis(1234567));
  EXPECT_EQ((*got)->seq, 2);
  auto by_request = store->FindByRequestId("req-1");
  ASSERT_TRUE(by_request.ok());
  ASSERT_TRUE(by_request->has_value());
  EXPECT_EQ((*by_request)->job.id(), "j-1");
  EXPECT_EQ(*store->MaxSeq(), 2);
  auto missing = store->Get("j-404");
  ASSERT_TRUE(missing.ok());
  EXPECT_FALSE(missing->has_value());
}

TEST(SqliteJobStoreTest, RequestIdIsUniqueAndNeverOverwrites) {
  TempDir dir;
  auto store = OpenOrDie(dir / "jobs.db");
  ASSERT_TRUE(store->Create(MakeRecord(1, qnet::v1::QUEUED, "same")).get().ok());
  absl::Status dup = store->Create(MakeRecord(2, qnet::v1::QUEUED, "same")).get();
  EXPECT_FALSE(dup.ok());
  // Creating an existing id fails instead of replacing the stored job.
  JobRecord clash = MakeRecord(3, qnet::v1::FAILED);
  clash.job.set_id("j-1");
  EXPECT_FALSE(store->Create(clash).get().ok());
  // Saving a job that was never created fails too.
  EXPECT_TRUE(absl::IsNotFound(store->Save(MakeRecord(9, qnet::v1::QUEUED)).get()));
  auto got = store->Get("j-1");
  ASSERT_TRUE(got.ok() && got->has_value());
  EXPECT_EQ((*got)->job.state(), qnet::v1::QUEUED);
  EXPECT_EQ(*store->MaxSeq(), 1);
}

TEST(SqliteJobStoreTest, ListPagesNewestFirstWithStateFilter) {
  TempDir dir;
  auto store = OpenOrDie(dir / "jobs.db");
  std::vector<std::future<absl::Status>> writes;
  for (int i = 1; i <= 25; ++i) {
    writes.push_back(
        store->Create(MakeRecord(i, i % 2 == 0 ? qnet::v1::SUCCEEDED : qnet::v1::QUEUED)));
  }
  for (auto& w : writes) ASSERT_TRUE(w.get().ok());

  std::vector<int64_t> seen;
  int64_t before = 0;
  int pages = 0;
  do {
    auto page = store->List(qnet::v1::JOB_STATE_UNSPECIFIED, before, 10);
    ASSERT_TRUE(page.ok()) << page.status();
    for (const JobRecord& r : page->records) seen.push_back(r.seq);
    before = page->next_before_seq;
    ++pages;
  } while (before != 0 && pages < 10);
  EXPECT_EQ(pages, 3);
  ASSERT_EQ(seen.size(), 25u);
  for (size_t i = 0; i < seen.size(); ++i) EXPECT_EQ(seen[i], 25 - static_cast<int64_t>(i));

  auto queued = store->List(qnet::v1::QUEUED, 0, 100);
  ASSERT_TRUE(queued.ok());
  EXPECT_EQ(queued->records.size(), 13u);
  EXPECT_EQ(queued->next_before_seq, 0);
  for (const JobRecord& r : queued->records) EXPECT_EQ(r.job.state(), qnet::v1::QUEUED);

  auto exact = store->List(qnet::v1::SUCCEEDED, 0, 12);  // exactly all of them: no next page
  ASSERT_TRUE(exact.ok());
  EXPECT_EQ(exact->records.size(), 12u);
  EXPECT_EQ(exact->next_before_seq, 0);
}

TEST(SqliteJobStoreTest, ActiveJobsAndCounts) {
  TempDir dir;
  auto store = OpenOrDie(dir / "jobs.db");
  ASSERT_TRUE(store->Create(MakeRecord(1, qnet::v1::QUEUED)).get().ok());
  ASSERT_TRUE(store->Create(MakeRecord(2, qnet::v1::RUNNING)).get().ok());
  ASSERT_TRUE(store->Create(MakeRecord(3, qnet::v1::CANCELLED)).get().ok());
  ASSERT_TRUE(store->Create(MakeRecord(4, qnet::v1::QUEUED)).get().ok());
  std::vector<int64_t> active;
  ASSERT_TRUE(store->ForEachActive([&](JobRecord r) { active.push_back(r.seq); }).ok());
  EXPECT_EQ(active, (std::vector<int64_t>{1, 2, 4}));
  auto counts = store->CountByState();
  ASSERT_TRUE(counts.ok());
  EXPECT_EQ((*counts)[qnet::v1::QUEUED], 2);
  EXPECT_EQ((*counts)[qnet::v1::RUNNING], 1);
  EXPECT_EQ((*counts)[qnet::v1::CANCELLED], 1);
}

TEST(SqliteJobStoreTest, GroupCommitBatchesConcurrentWrites) {
  TempDir dir;
  auto store = OpenOrDie(dir / "jobs.db");
  constexpr int kThreads = 16;
  constexpr int kPerThread = 40;
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        const int64_t seq = 1 + t * kPerThread + i;
        if (!store->Create(MakeRecord(seq, qnet::v1::QUEUED)).get().ok()) ++failures;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures, 0);
  EXPECT_EQ(*store->MaxSeq(), kThreads * kPerThread);
  // Each durable write waited for its commit, yet commits were shared.
  EXPECT_LT(store->commits(), kThreads * kPerThread);
}

TEST(SqliteJobStoreTest, ClosedStoreRefusesWrites) {
  TempDir dir;
  auto store = OpenOrDie(dir / "jobs.db");
  store->Close();
  store->Close();  // idempotent
  EXPECT_TRUE(absl::IsUnavailable(store->Create(MakeRecord(1, qnet::v1::QUEUED)).get()));
  EXPECT_TRUE(absl::IsUnavailable(store->Get("j-1").status()));
}

TEST(SqliteJobStoreTest, GarbageFileIsAnErrorNotACrash) {
  TempDir dir;
  testing::WriteFile(dir / "jobs.db", std::string(8192, 'x'));
  auto store = SqliteJobStore::Open(dir / "jobs.db");
  ASSERT_FALSE(store.ok());
  EXPECT_THAT(std::string(store.status().message()), HasSubstr("jobs.db"));
}

}  // namespace
}  // namespace qnet::server
