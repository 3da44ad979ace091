// FaultInjectingJobStore: a JobStore that passes everything to another one, except the writes it
// is told to refuse (they fail UNAVAILABLE and never reach the inner store, like a commit that
// hit a full disk) or to hold back (their StoreWrites stay pending until released, to see what
// callers show while a write is in flight). Writes reach the inner store in call order; deletes
// pass straight through, never refused or held.
//
//   FaultInjectingJobStore store(std::move(sqlite));
//   store.FailWrites(1);              // the next write fails; later ones pass
//   store.FailWrites(2, /*skip=*/1);  // one passes, then two fail
//   store.FailWrites(kEveryWrite);    // every write fails until Heal()
//   store.HoldWrites();  ...  store.ReleaseWrites(/*fail=*/false);
#ifndef QNET_TESTS_SERVER_STORE_FAULT_INJECTING_JOB_STORE_H_
#define QNET_TESTS_SERVER_STORE_FAULT_INJECTING_JOB_STORE_H_

#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>

#include "server/store/job_store.h"

namespace qnet::server::testing {

class FaultInjectingJobStore final : public JobStore {
 public:
  static constexpr int64_t kEveryWrite = -1;

  explicit FaultInjectingJobStore(std::unique_ptr<JobStore> inner);
  ~FaultInjectingJobStore() override;  // releases held writes, then closes

  // Lets `skip` more writes through, then refuses `count` (kEveryWrite: all until Heal()).
  void FailWrites(int64_t count, int64_t skip = 0);
  void Heal();  // no more refusals
  // Writes from now on wait here, in order, until ReleaseWrites() hands them to the inner store
  // (fail = false) or refuses them all (fail = true).
  void HoldWrites();
  void ReleaseWrites(bool fail = false);

  int64_t writes() const;       // Create and Save calls so far
  int64_t refused() const;      // writes failed on purpose so far
  int64_t held_writes() const;  // writes waiting for ReleaseWrites()
  JobStore& inner() { return *inner_; }

  StoreWrite Create(const JobRecord& record) override;
  StoreWrite Save(const JobRecord& record) override;
  absl::StatusOr<std::optional<JobRecord>> Get(absl::string_view id) override;
  absl::StatusOr<std::optional<JobRecord>> FindByRequestId(absl::string_view request_id) override;
  absl::StatusOr<JobPage> List(qnet::v1::JobState state, int64_t before_seq, int limit) override;
  absl::Status ForEachActive(const std::function<void(JobRecord)>& fn) override;
  absl::StatusOr<std::map<qnet::v1::JobState, int64_t>> CountByState() override;
  absl::StatusOr<int64_t> MaxSeq() override;
  StoreWrite Delete(absl::string_view id) override;
  absl::StatusOr<int64_t> DiskBytes() override;
  void Close() override;
  int64_t commits() const override;

 private:
  struct HeldWrite {
    JobRecord record;
    bool create;
    StoreWrite::Outcome outcome;  // set to the inner store's answer once released
  };

  StoreWrite Write(const JobRecord& record, bool create);
  // Hands a write to the inner store (or refuses it); mu_ held, so the order is the call order.
  StoreWrite Forward(const JobRecord& record, bool create, bool refuse);

  const std::unique_ptr<JobStore> inner_;
  mutable std::mutex mu_;
  int64_t writes_ = 0;
  int64_t refused_ = 0;
  int64_t skip_ = 0;
  int64_t fail_ = 0;  // writes still to refuse after skip_; kEveryWrite = all
  bool holding_ = false;
  std::deque<HeldWrite> held_;
};

}  // namespace qnet::server::testing

#endif  // QNET_TESTS_SERVER_STORE_FAULT_INJECTING_JOB_STORE_H_
