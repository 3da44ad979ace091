// The JobStore conformance suite (see job_store_conformance.h); instantiated per store in that
// store's test file.
#include "tests/server/store/job_store_conformance.h"

#include <atomic>
#include <thread>
#include <vector>

#include <google/protobuf/descriptor.h>
#include <google/protobuf/message.h>
#include <google/protobuf/util/message_differencer.h>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"

namespace qnet::server::testing {
namespace {

using google::protobuf::FieldDescriptor;
using google::protobuf::util::MessageDifferencer;
using qnet::v1::JobState;

// Sets every field of `m`, recursively (repeated ones twice), to values that depend on `seed`, so
// a store that drops or mixes up any field, including one added to the protos later, fails.
void FillEveryField(google::protobuf::Message* m, int seed, int depth = 0) {
  const google::protobuf::Descriptor* d = m->GetDescriptor();
  const google::protobuf::Reflection* r = m->GetReflection();
  for (int i = 0; i < d->field_count(); ++i) {
    const FieldDescriptor* f = d->field(i);
    for (int k = 0; k < (f->is_repeated() ? 2 : 1); ++k) {
      const int v = seed * 1000 + f->number() * 10 + k + 1;
#define QNET_SET(Type, value) \
  f->is_repeated() ? r->Add##Type(m, f, value) : r->Set##Type(m, f, value)
      switch (f->cpp_type()) {
        case FieldDescriptor::CPPTYPE_INT32:
          QNET_SET(Int32, -v);
          break;
        case FieldDescriptor::CPPTYPE_INT64:
          QNET_SET(Int64, int64_t{v} << 33);
          break;
        case FieldDescriptor::CPPTYPE_UINT32:
          QNET_SET(UInt32, static_cast<uint32_t>(v));
          break;
        case FieldDescriptor::CPPTYPE_UINT64:
          QNET_SET(UInt64, uint64_t{1} << 63 | v);
          break;
        case FieldDescriptor::CPPTYPE_DOUBLE:
          QNET_SET(Double, v + 0.25);
          break;
        case FieldDescriptor::CPPTYPE_FLOAT:
          QNET_SET(Float, v + 0.5F);
          break;
        case FieldDescriptor::CPPTYPE_BOOL:
          QNET_SET(Bool, true);
          break;
        case FieldDescriptor::CPPTYPE_ENUM: {
          const google::protobuf::EnumDescriptor* e = f->enum_type();
          QNET_SET(Enum, e->value(e->value_count() - 1));
          break;
        }
        case FieldDescriptor::CPPTYPE_STRING:
          // What a careless text column would mangle: NUL, quotes, non-ASCII (proto3 strings
          // must stay UTF-8).
          QNET_SET(String, absl::StrCat(f->name(), "-", v, std::string("\0'\"\xc3\xa9", 5)));
          break;
        case FieldDescriptor::CPPTYPE_MESSAGE:
          if (depth < 4) {
            google::protobuf::Message* sub =
                f->is_repeated() ? r->AddMessage(m, f) : r->MutableMessage(m, f);
            FillEveryField(sub, seed * 7 + k, depth + 1);
          }
          break;
      }
#undef QNET_SET
    }
  }
}

// A record of job "j-<seq>" in `state`; `full` sets every field of the job and the lease.
JobRecord Record(int64_t seq, JobState state, std::string request_id = "", bool full = false) {
  JobRecord r;
  if (full) {
    FillEveryField(&r.job, static_cast<int>(seq));
    r.lease_token = absl::StrCat("token-", seq);
    r.lease_expire = absl::FromUnixMillis(1800000000123 + seq);  // stores keep milliseconds
  }
  r.seq = seq;
  r.job.set_id(absl::StrCat("j-", seq));
  r.job.set_state(state);
  r.job.set_request_id(std::move(request_id));
  r.job.mutable_spec()->set_priority(static_cast<int32_t>(seq % 3));
  r.job.set_attempt(1);
  return r;
}

MATCHER_P(SameRecord, want, "") {
  const JobRecord& got = arg;
  std::string diff;
  MessageDifferencer d;
  d.ReportDifferencesToString(&diff);
  const bool same_job = d.Compare(want.job, got.job);
  *result_listener << diff;
  if (got.seq != want.seq) *result_listener << " seq " << got.seq << " != " << want.seq;
  if (got.lease_token != want.lease_token) *result_listener << " lease_token differs";
  if (got.lease_expire != want.lease_expire) *result_listener << " lease_expire differs";
  return same_job && got.seq == want.seq && got.lease_token == want.lease_token &&
         got.lease_expire == want.lease_expire;
}

JobRecord GetOrDie(JobStore& store, const std::string& id) {
  absl::StatusOr<std::optional<JobRecord>> r = store.Get(id);
  EXPECT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r.ok() && r->has_value()) << id << " is not stored";
  return r.ok() && r->has_value() ? **r : JobRecord();
}

std::vector<int64_t> ActiveSeqs(JobStore& store) {
  std::vector<int64_t> seqs;
  EXPECT_TRUE(store.ForEachActive([&](JobRecord r) { seqs.push_back(r.seq); }).ok());
  return seqs;
}

}  // namespace

std::unique_ptr<JobStore> JobStoreConformanceTest::Open() {
  absl::StatusOr<std::unique_ptr<JobStore>> store = GetParam().open(dir_.path());
  EXPECT_TRUE(store.ok()) << store.status();
  return store.ok() ? *std::move(store) : nullptr;
}

void JobStoreConformanceTest::Reopen(bool close) {
  if (close) store_->Close();
  store_.reset();
  store_ = Open();
  ASSERT_NE(store_, nullptr);
}

TEST_P(JobStoreConformanceTest, EveryFieldRoundTripsThroughEveryRead) {
  const JobRecord want = Record(7, qnet::v1::RUNNING, "req-7", /*full=*/true);
  ASSERT_TRUE(store_->Create(want).Wait().ok());
  EXPECT_THAT(GetOrDie(*store_, "j-7"), SameRecord(want));
  auto by_request = store_->FindByRequestId("req-7");
  ASSERT_TRUE(by_request.ok() && by_request->has_value()) << by_request.status();
  EXPECT_THAT(**by_request, SameRecord(want));
  auto page = store_->List(qnet::v1::RUNNING, 0, 10);
  ASSERT_TRUE(page.ok()) << page.status();
  ASSERT_EQ(page->records.size(), 1u);
  EXPECT_THAT(page->records[0], SameRecord(want));
  std::vector<JobRecord> active;
  ASSERT_TRUE(store_->ForEachActive([&](JobRecord r) { active.push_back(std::move(r)); }).ok());
  ASSERT_EQ(active.size(), 1u);
  EXPECT_THAT(active[0], SameRecord(want));
  Reopen();
  EXPECT_THAT(GetOrDie(*store_, "j-7"), SameRecord(want));
}

TEST_P(JobStoreConformanceTest, MissingJobsAreEmptyNotErrors) {
  auto missing = store_->Get("j-404");
  ASSERT_TRUE(missing.ok()) << missing.status();
  EXPECT_FALSE(missing->has_value());
  auto no_request = store_->FindByRequestId("req-404");
  ASSERT_TRUE(no_request.ok()) << no_request.status();
  EXPECT_FALSE(no_request->has_value());
  EXPECT_EQ(*store_->MaxSeq(), 0);
  EXPECT_TRUE(store_->List(qnet::v1::JOB_STATE_UNSPECIFIED, 0, 10)->records.empty());
  EXPECT_TRUE(ActiveSeqs(*store_).empty());
}

TEST_P(JobStoreConformanceTest, CreateNeverOverwrites) {
  const JobRecord first = Record(1, qnet::v1::QUEUED, "same", /*full=*/true);
  ASSERT_TRUE(store_->Create(first).Wait().ok());
  EXPECT_FALSE(store_->Create(Record(2, qnet::v1::QUEUED, "same")).Wait().ok()) << "request_id";
  JobRecord same_id = Record(3, qnet::v1::FAILED);
  same_id.job.set_id("j-1");
  EXPECT_FALSE(store_->Create(same_id).Wait().ok()) << "id";
  JobRecord same_seq = Record(1, qnet::v1::FAILED);
  same_seq.job.set_id("j-other");
  EXPECT_FALSE(store_->Create(same_seq).Wait().ok()) << "seq";
  EXPECT_THAT(GetOrDie(*store_, "j-1"), SameRecord(first));
  EXPECT_EQ(*store_->MaxSeq(), 1);
  // No request_id is not a request_id: any number of jobs may have none.
  EXPECT_TRUE(store_->Create(Record(4, qnet::v1::QUEUED)).Wait().ok());
  EXPECT_TRUE(store_->Create(Record(5, qnet::v1::QUEUED)).Wait().ok());
}

TEST_P(JobStoreConformanceTest, SaveReplacesTheWholeRecord) {
  ASSERT_TRUE(store_->Create(Record(1, qnet::v1::RUNNING, "req", /*full=*/true)).Wait().ok());
  // Another full record of the same job: every field changes.
  JobRecord changed = Record(1, qnet::v1::SUCCEEDED, "req", /*full=*/false);
  FillEveryField(&changed.job, 99);
  changed.job.set_id("j-1");
  changed.job.set_state(qnet::v1::SUCCEEDED);
  changed.job.set_request_id("req");
  changed.lease_token = "other";
  changed.lease_expire = absl::FromUnixMillis(42);
  ASSERT_TRUE(store_->Save(changed).Wait().ok());
  EXPECT_THAT(GetOrDie(*store_, "j-1"), SameRecord(changed));
  // A sparse record: fields set before are cleared, not kept.
  const JobRecord sparse = Record(1, qnet::v1::QUEUED, "req");
  ASSERT_TRUE(store_->Save(sparse).Wait().ok());
  EXPECT_THAT(GetOrDie(*store_, "j-1"), SameRecord(sparse));
  Reopen();
  EXPECT_THAT(GetOrDie(*store_, "j-1"), SameRecord(sparse));
}

TEST_P(JobStoreConformanceTest, SaveOfAJobNeverCreatedIsNotFound) {
  EXPECT_TRUE(absl::IsNotFound(store_->Save(Record(9, qnet::v1::QUEUED)).Wait()));
  ASSERT_TRUE(store_->Create(Record(1, qnet::v1::QUEUED, "req")).Wait().ok());
  // seq and request_id never change: a save that changes them names another job.
  JobRecord other_seq = Record(1, qnet::v1::RUNNING, "req");
  other_seq.seq = 2;
  EXPECT_TRUE(absl::IsNotFound(store_->Save(other_seq).Wait()));
  EXPECT_TRUE(absl::IsNotFound(store_->Save(Record(1, qnet::v1::RUNNING, "other")).Wait()));
  EXPECT_EQ(GetOrDie(*store_, "j-1").job.state(), qnet::v1::QUEUED);
  auto nine = store_->Get("j-9");
  ASSERT_TRUE(nine.ok());
  EXPECT_FALSE(nine->has_value());
}

TEST_P(JobStoreConformanceTest, DeleteRemovesTheJobDurablyAndFreesItsRequestId) {
  ASSERT_TRUE(store_->Create(Record(1, qnet::v1::SUCCEEDED, "req", /*full=*/true)).Wait().ok());
  ASSERT_TRUE(store_->Create(Record(2, qnet::v1::FAILED)).Wait().ok());
  EXPECT_TRUE(absl::IsNotFound(store_->Delete("j-404").Wait()));
  // Ordered with the other writes: the save before it is undone, nothing after it is lost.
  StoreWrite saved = store_->Save(Record(1, qnet::v1::CANCELLED, "req"));
  StoreWrite deleted = store_->Delete("j-1");
  ASSERT_TRUE(saved.Wait().ok());
  ASSERT_TRUE(deleted.Wait().ok());
  Reopen();
  EXPECT_FALSE(store_->Get("j-1")->has_value());
  EXPECT_FALSE(store_->FindByRequestId("req")->has_value());
  EXPECT_EQ(store_->List(qnet::v1::JOB_STATE_UNSPECIFIED, 0, 10)->records.size(), 1u);
  EXPECT_EQ((*store_->CountByState())[qnet::v1::SUCCEEDED], 0);
  EXPECT_TRUE(store_->Create(Record(3, qnet::v1::QUEUED, "req")).Wait().ok());
  EXPECT_TRUE(absl::IsNotFound(store_->Delete("j-1").Wait()));
  absl::StatusOr<int64_t> bytes = store_->DiskBytes();
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  EXPECT_GT(*bytes, 0);
}

TEST_P(JobStoreConformanceTest, WritesApplyInCallOrder) {
  // Nothing waits between the calls: the store must apply them in this order.
  std::vector<StoreWrite> writes;
  JobRecord r = Record(1, qnet::v1::QUEUED);
  writes.push_back(store_->Create(r));
  for (int attempt = 2; attempt <= 30; ++attempt) {
    r.job.set_attempt(attempt);
    r.job.set_state(attempt % 2 == 0 ? qnet::v1::RUNNING : qnet::v1::QUEUED);
    writes.push_back(store_->Save(r));
  }
  for (auto& w : writes) ASSERT_TRUE(w.Wait().ok());
  EXPECT_THAT(GetOrDie(*store_, "j-1"), SameRecord(r));
}

TEST_P(JobStoreConformanceTest, ListPagesNewestFirstWithStateFilter) {
  std::vector<StoreWrite> writes;
  for (int i = 1; i <= 25; ++i) {
    writes.push_back(
        store_->Create(Record(i, i % 2 == 0 ? qnet::v1::SUCCEEDED : qnet::v1::QUEUED)));
  }
  for (auto& w : writes) ASSERT_TRUE(w.Wait().ok());

  std::vector<int64_t> seen;
  int64_t before = 0;
  int pages = 0;
  do {
    auto page = store_->List(qnet::v1::JOB_STATE_UNSPECIFIED, before, 10);
    ASSERT_TRUE(page.ok()) << page.status();
    for (const JobRecord& r : page->records) seen.push_back(r.seq);
    before = page->next_before_seq;
    ++pages;
  } while (before != 0 && pages < 10);
  EXPECT_EQ(pages, 3);
  ASSERT_EQ(seen.size(), 25u);
  for (size_t i = 0; i < seen.size(); ++i) EXPECT_EQ(seen[i], 25 - static_cast<int64_t>(i));

  auto queued = store_->List(qnet::v1::QUEUED, 0, 100);
  ASSERT_TRUE(queued.ok());
  EXPECT_EQ(queued->records.size(), 13u);
  EXPECT_EQ(queued->next_before_seq, 0);
  for (const JobRecord& r : queued->records) EXPECT_EQ(r.job.state(), qnet::v1::QUEUED);
  auto older = store_->List(qnet::v1::QUEUED, 10, 100);  // seq < 10
  ASSERT_TRUE(older.ok());
  EXPECT_EQ(older->records.size(), 5u);

  auto exact = store_->List(qnet::v1::SUCCEEDED, 0, 12);  // exactly all of them: no next page
  ASSERT_TRUE(exact.ok());
  EXPECT_EQ(exact->records.size(), 12u);
  EXPECT_EQ(exact->next_before_seq, 0);
}

TEST_P(JobStoreConformanceTest, ActiveJobsAndCountsFollowSavedStates) {
  for (int i = 1; i <= 4; ++i) {
    const JobState state = i == 3   ? qnet::v1::CANCELLED
                           : i == 2 ? qnet::v1::RUNNING
                                    : qnet::v1::QUEUED;
    ASSERT_TRUE(store_->Create(Record(i, state)).Wait().ok());
  }
  EXPECT_EQ(ActiveSeqs(*store_), (std::vector<int64_t>{1, 2, 4}));
  auto counts = store_->CountByState();
  ASSERT_TRUE(counts.ok());
  EXPECT_EQ((*counts)[qnet::v1::QUEUED], 2);
  EXPECT_EQ((*counts)[qnet::v1::RUNNING], 1);
  EXPECT_EQ((*counts)[qnet::v1::CANCELLED], 1);

  // A save moves the job between states for every read, not only Get.
  ASSERT_TRUE(store_->Save(Record(2, qnet::v1::SUCCEEDED)).Wait().ok());
  ASSERT_TRUE(store_->Save(Record(3, qnet::v1::QUEUED)).Wait().ok());
  EXPECT_EQ(ActiveSeqs(*store_), (std::vector<int64_t>{1, 3, 4}));
  counts = store_->CountByState();
  ASSERT_TRUE(counts.ok());
  EXPECT_EQ((*counts)[qnet::v1::QUEUED], 3);
  EXPECT_EQ((*counts)[qnet::v1::RUNNING], 0);
  EXPECT_EQ((*counts)[qnet::v1::SUCCEEDED], 1);
  EXPECT_EQ((*counts)[qnet::v1::CANCELLED], 0);
  auto succeeded = store_->List(qnet::v1::SUCCEEDED, 0, 10);
  ASSERT_TRUE(succeeded.ok());
  ASSERT_EQ(succeeded->records.size(), 1u);
  EXPECT_EQ(succeeded->records[0].seq, 2);
}

TEST_P(JobStoreConformanceTest, ManyJobsFromConcurrentWriters) {
  constexpr int kThreads = 8;
  constexpr int kPerThread = 250;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        JobRecord r = Record(1 + t * kPerThread + i, qnet::v1::QUEUED, absl::StrCat("req-", t, i));
        if (!store_->Create(r).Wait().ok()) ++failures;
        r.job.set_state(qnet::v1::RUNNING);  // a save right behind each create
        if (i % 2 == 0 && !store_->Save(r).Wait().ok()) ++failures;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures, 0);
  EXPECT_EQ(*store_->MaxSeq(), kThreads * kPerThread);
  auto counts = store_->CountByState();
  ASSERT_TRUE(counts.ok());
  EXPECT_EQ((*counts)[qnet::v1::RUNNING], kThreads * kPerThread / 2);
  EXPECT_EQ((*counts)[qnet::v1::QUEUED], kThreads * kPerThread / 2);
  EXPECT_EQ(ActiveSeqs(*store_).size(), static_cast<size_t>(kThreads * kPerThread));
  EXPECT_EQ(GetOrDie(*store_, absl::StrCat("j-", kPerThread + 1)).job.request_id(), "req-10");
  EXPECT_GT(store_->commits(), 0);
  EXPECT_LE(store_->commits(), kThreads * kPerThread * 3 / 2);
}

TEST_P(JobStoreConformanceTest, ResolvedWritesSurviveReopenWithOrWithoutClose) {
  for (bool close : {true, false}) {
    SCOPED_TRACE(close ? "Close() then reopen" : "destroyed without Close(), then reopen");
    const int64_t seq = close ? 1 : 2;
    JobRecord r = Record(seq, qnet::v1::QUEUED, absl::StrCat("req-", seq));
    ASSERT_TRUE(store_->Create(r).Wait().ok());
    r.job.set_state(qnet::v1::RUNNING);
    r.job.set_worker_id("w1");
    r.lease_token = "tok";
    r.lease_expire = absl::FromUnixMillis(1234567);
    ASSERT_TRUE(store_->Save(r).Wait().ok());
    Reopen(close);
    EXPECT_THAT(GetOrDie(*store_, r.job.id()), SameRecord(r));
    EXPECT_EQ(*store_->MaxSeq(), seq);
  }
}

TEST_P(JobStoreConformanceTest, CloseStoresQueuedWritesThenRefusesEverything) {
  std::vector<StoreWrite> writes;
  for (int i = 1; i <= 50; ++i) writes.push_back(store_->Create(Record(i, qnet::v1::QUEUED)));
  store_->Close();  // nobody waited for those writes yet
  for (auto& w : writes) EXPECT_TRUE(w.Wait().ok());
  store_->Close();  // idempotent
  EXPECT_TRUE(absl::IsUnavailable(store_->Create(Record(51, qnet::v1::QUEUED)).Wait()));
  EXPECT_TRUE(absl::IsUnavailable(store_->Save(Record(1, qnet::v1::RUNNING)).Wait()));
  EXPECT_TRUE(absl::IsUnavailable(store_->Get("j-1").status()));
  EXPECT_TRUE(absl::IsUnavailable(store_->List(qnet::v1::QUEUED, 0, 10).status()));
  EXPECT_TRUE(absl::IsUnavailable(store_->MaxSeq().status()));
  Reopen(/*close=*/false);
  EXPECT_EQ(*store_->MaxSeq(), 50);
  EXPECT_EQ(GetOrDie(*store_, "j-1").job.state(), qnet::v1::QUEUED);
}

}  // namespace qnet::server::testing
