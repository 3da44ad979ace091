// FaultInjectingJobStore: with no fault injected it is a conforming JobStore (the wrapper the
// scheduler's durability tests rely on must not change what the store does); refused writes
// never reach the inner store; held writes are invisible until released, then land in order.
#include "tests/server/store/fault_injecting_job_store.h"

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/store/sqlite_job_store.h"
#include "tests/server/store/job_store_conformance.h"
#include "tests/server/test_util.h"

namespace qnet::server::testing {
namespace {

absl::StatusOr<std::unique_ptr<JobStore>> OpenWrappedSqlite(const std::string& dir) {
  auto sqlite = SqliteJobStore::Open(dir + "/jobs.db");
  if (!sqlite.ok()) return sqlite.status();
  return std::unique_ptr<JobStore>(std::make_unique<FaultInjectingJobStore>(*std::move(sqlite)));
}

INSTANTIATE_TEST_SUITE_P(FaultInjecting, JobStoreConformanceTest,
                         ::testing::Values(JobStoreUnderTest{"fault_injecting_sqlite",
                                                             &OpenWrappedSqlite}),
                         JobStoreUnderTest::Name);

JobRecord Queued(int64_t seq) {
  JobRecord r;
  r.seq = seq;
  r.job.set_id(absl::StrCat("j-", seq));
  r.job.set_state(qnet::v1::QUEUED);
  return r;
}

class FaultInjectingJobStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto store = OpenWrappedSqlite(dir_.path());
    ASSERT_TRUE(store.ok()) << store.status();
    store_.reset(static_cast<FaultInjectingJobStore*>(store->release()));
  }

  bool Stored(int64_t seq) {
    auto r = store_->Get(absl::StrCat("j-", seq));
    return r.ok() && r->has_value();
  }

  TempDir dir_;
  std::unique_ptr<FaultInjectingJobStore> store_;
};

TEST_F(FaultInjectingJobStoreTest, RefusesTheWritesItIsToldToAndNoOthers) {
  store_->FailWrites(/*count=*/2, /*skip=*/1);
  EXPECT_TRUE(store_->Create(Queued(1)).Wait().ok());
  absl::Status refused = store_->Create(Queued(2)).Wait();
  EXPECT_TRUE(absl::IsUnavailable(refused)) << refused;
  EXPECT_THAT(std::string(refused.message()), ::testing::HasSubstr("injected fault"));
  EXPECT_FALSE(store_->Create(Queued(3)).Wait().ok());
  EXPECT_TRUE(store_->Create(Queued(4)).Wait().ok());
  EXPECT_TRUE(Stored(1));
  EXPECT_FALSE(Stored(2));
  EXPECT_FALSE(Stored(3));
  EXPECT_TRUE(Stored(4));
  EXPECT_EQ(store_->writes(), 4);
  EXPECT_EQ(store_->refused(), 2);

  store_->FailWrites(FaultInjectingJobStore::kEveryWrite);
  for (int seq = 5; seq < 10; ++seq) EXPECT_FALSE(store_->Create(Queued(seq)).Wait().ok());
  store_->Heal();
  EXPECT_TRUE(store_->Create(Queued(10)).Wait().ok());
  EXPECT_EQ(*store_->MaxSeq(), 10);
}

TEST_F(FaultInjectingJobStoreTest, HeldWritesAreInvisibleUntilReleasedThenLandInOrder) {
  store_->HoldWrites();
  StoreWrite create = store_->Create(Queued(1));
  JobRecord running = Queued(1);
  running.job.set_state(qnet::v1::RUNNING);
  StoreWrite save = store_->Save(running);
  EXPECT_EQ(store_->held_writes(), 2);
  EXPECT_FALSE(Stored(1));
  store_->ReleaseWrites();
  EXPECT_TRUE(create.Wait().ok());
  EXPECT_TRUE(save.Wait().ok());  // after the create: it found the job
  EXPECT_EQ((*store_->Get("j-1"))->job.state(), qnet::v1::RUNNING);

  store_->HoldWrites();
  StoreWrite refused = store_->Create(Queued(2));
  store_->ReleaseWrites(/*fail=*/true);
  EXPECT_TRUE(absl::IsUnavailable(refused.Wait()));
  EXPECT_FALSE(Stored(2));
}

}  // namespace
}  // namespace qnet::server::testing
