// The SQLite job store: the conformance suite (opened by URI, through the registry), what is
// particular to SQLite (group commit, a file that is not a database), and the store registry's
// URI handling.
#include <sqlite3.h>

#include <atomic>
#include <filesystem>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/store/job_store_registry.h"
#include "server/store/sqlite_job_store.h"
#include "tests/server/store/job_store_conformance.h"
#include "tests/server/test_util.h"

namespace qnet::server {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using testing::JobStoreConformanceTest;
using testing::JobStoreUnderTest;
using testing::TempDir;

INSTANTIATE_TEST_SUITE_P(Sqlite, JobStoreConformanceTest,
                         ::testing::Values(JobStoreUnderTest{"sqlite",
                                                             [](const std::string& dir) {
                                                               return OpenJobStore(absl::StrCat(
                                                                   "sqlite://", dir, "/jobs.db"));
                                                             }}),
                         JobStoreUnderTest::Name);

JobRecord Queued(int64_t seq) {
  JobRecord r;
  r.seq = seq;
  r.job.set_id(absl::StrCat("j-", seq));
  r.job.set_state(qnet::v1::QUEUED);
  return r;
}

TEST(SqliteJobStoreTest, GroupCommitBatchesConcurrentWrites) {
  TempDir dir;
  auto store = SqliteJobStore::Open(dir / "jobs.db");
  ASSERT_TRUE(store.ok()) << store.status();
  constexpr int kThreads = 16;
  constexpr int kPerThread = 40;
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        if (!(*store)->Create(Queued(1 + t * kPerThread + i)).Wait().ok()) ++failures;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures, 0);
  EXPECT_EQ(*(*store)->MaxSeq(), kThreads * kPerThread);
  // Each durable write waited for its commit, yet commits were shared.
  EXPECT_LT((*store)->commits(), kThreads * kPerThread);
}

TEST(SqliteJobStoreTest, GarbageFileIsAnErrorNotACrash) {
  TempDir dir;
  testing::WriteFile(dir / "jobs.db", std::string(8192, 'x'));
  auto store = SqliteJobStore::Open(dir / "jobs.db");
  ASSERT_FALSE(store.ok());
  EXPECT_THAT(std::string(store.status().message()), HasSubstr("jobs.db"));
}

TEST(SqliteJobStoreTest, StringsThatAreNotUtf8ReadBackRepaired) {
  TempDir dir;
  ASSERT_TRUE(SqliteJobStore::Open(dir / "jobs.db").ok());  // the schema
  // What an older version could store: an error cut inside a character, and a class name (a
  // nested string) that is not UTF-8. Markers of the same length keep the framing intact.
  qnet::v1::Job job;
  job.set_id("j-old");
  job.set_state(qnet::v1::FAILED);
  job.set_error("ERRORMARK");
  job.mutable_metrics()->add_class_names("CLASSMARK");
  std::string bytes = job.SerializeAsString();
  bytes.replace(bytes.find("ERRORMARK"), 9, "cut \xE2\x82!!!");
  bytes.replace(bytes.find("CLASSMARK"), 9, "caf\xC3 nine");
  ASSERT_FALSE(job.ParseFromString(bytes));
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open((dir / "jobs.db").c_str(), &db), SQLITE_OK);
  sqlite3_stmt* insert = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db,
                               "INSERT INTO jobs(id, seq, state, priority, job) "
                               "VALUES('j-old', 1, 4, 0, ?1)",
                               -1, &insert, nullptr),
            SQLITE_OK);
  sqlite3_bind_blob(insert, 1, bytes.data(), static_cast<int>(bytes.size()), SQLITE_TRANSIENT);
  EXPECT_EQ(sqlite3_step(insert), SQLITE_DONE);
  sqlite3_finalize(insert);
  sqlite3_close(db);

  auto store = SqliteJobStore::Open(dir / "jobs.db");
  ASSERT_TRUE(store.ok()) << store.status();
  auto got = (*store)->Get("j-old");
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_TRUE(got->has_value());
  EXPECT_EQ((*got)->job.error(), "cut \uFFFD!!!");
  EXPECT_THAT((*got)->job.metrics().class_names(), ::testing::ElementsAre("caf\uFFFD nine"));
  auto page = (*store)->List(qnet::v1::JOB_STATE_UNSPECIFIED, 0, 10);
  ASSERT_TRUE(page.ok()) << page.status();
  ASSERT_EQ(page->records.size(), 1u);
  EXPECT_EQ(page->records[0].job.error(), "cut \uFFFD!!!");
}

TEST(JobStoreRegistryTest, OpensSqliteByUriInAnyCase) {
  TempDir dir;
  for (const std::string scheme : {"sqlite", "SQLite"}) {
    auto store = OpenJobStore(absl::StrCat(scheme, "://", dir / "jobs.db"));
    ASSERT_TRUE(store.ok()) << store.status();
    EXPECT_NE(dynamic_cast<SqliteJobStore*>(store->get()), nullptr);
  }
}

TEST(JobStoreRegistryTest, UnknownSchemeOrBadUriNamesTheKnownSchemes) {
  auto unknown = OpenJobStore("postgres://db.example/qnet");
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(unknown.status().message()),
              AllOf(HasSubstr("unknown job store scheme \"postgres\""),
                    HasSubstr("known schemes: sqlite (sqlite:///")));
  for (const char* bad : {"/var/lib/qnet/jobs.db", "sqlite:/var/lib/qnet/jobs.db", "://x", ""}) {
    auto status = OpenJobStore(bad).status();
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(std::string(status.message()),
                AllOf(HasSubstr("not SCHEME://LOCATION"), HasSubstr("known schemes: sqlite")))
        << bad;
  }
}

TEST(JobStoreRegistryTest, SqlitePathMustBeAbsolute) {
  auto relative = OpenJobStore("sqlite://jobs.db");
  EXPECT_EQ(relative.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(relative.status().message()),
              AllOf(HasSubstr("must be absolute"), HasSubstr("sqlite:///")));
  auto missing_folder = OpenJobStore("sqlite:///nonexistent-qnet-folder/jobs.db");
  EXPECT_FALSE(missing_folder.ok());
  EXPECT_THAT(std::string(missing_folder.status().message()),
              HasSubstr("/nonexistent-qnet-folder/jobs.db"));
}

TEST(JobStoreRegistryTest, DefaultIsTheDataDirJobsDbMadeAbsolute) {
  EXPECT_EQ(DefaultJobStoreUri("/var/lib/qnet"), "sqlite:///var/lib/qnet/jobs.db");
  const std::string cwd = std::filesystem::current_path().string();
  EXPECT_EQ(DefaultJobStoreUri("data"), absl::StrCat("sqlite://", cwd, "/data/jobs.db"));
}

}  // namespace
}  // namespace qnet::server
