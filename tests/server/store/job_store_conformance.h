// What every JobStore must do, as a parameterised GoogleTest suite (job_store_conformance.cc):
// round trips of every field through every read, create-never-overwrites, whole-record saves,
// writes applied in call order, paging and filters, counts, many jobs, concurrent writers,
// durability across reopen (with and without Close) and Close itself. A store joins by
// instantiating it with a way to open that store in a folder; `open` is called again on the same
// folder to check what survived:
//
//   INSTANTIATE_TEST_SUITE_P(Sqlite, JobStoreConformanceTest,
//                            ::testing::Values(JobStoreUnderTest{"sqlite", &OpenSqliteIn}),
//                            JobStoreUnderTest::Name);
#ifndef QNET_TESTS_SERVER_STORE_JOB_STORE_CONFORMANCE_H_
#define QNET_TESTS_SERVER_STORE_JOB_STORE_CONFORMANCE_H_

#include <functional>
#include <memory>
#include <ostream>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "server/store/job_store.h"
#include "tests/server/test_util.h"

namespace qnet::server::testing {

struct JobStoreUnderTest {
  std::string name;  // letters, digits and _ (a test name part)
  std::function<absl::StatusOr<std::unique_ptr<JobStore>>(const std::string& dir)> open;

  static std::string Name(const ::testing::TestParamInfo<JobStoreUnderTest>& info) {
    return info.param.name;
  }
};
inline void PrintTo(const JobStoreUnderTest& store, std::ostream* os) { *os << store.name; }

class JobStoreConformanceTest : public ::testing::TestWithParam<JobStoreUnderTest> {
 protected:
  void SetUp() override { store_ = Open(); }
  void TearDown() override {
    if (store_ != nullptr) store_->Close();
  }

  std::unique_ptr<JobStore> Open();
  // Closes (or, with close = false, just destroys) the store and opens it again.
  void Reopen(bool close = true);

  TempDir dir_;
  std::unique_ptr<JobStore> store_;
};

}  // namespace qnet::server::testing

namespace qnet::server {
// Failure messages show records, not bytes.
inline void PrintTo(const JobRecord& r, std::ostream* os) {
  *os << "{seq " << r.seq << ", lease_token \"" << r.lease_token << "\", lease_expire "
      << absl::FormatTime(r.lease_expire) << ", job " << r.job.ShortDebugString() << "}";
}
}  // namespace qnet::server

#endif  // QNET_TESTS_SERVER_STORE_JOB_STORE_CONFORMANCE_H_
