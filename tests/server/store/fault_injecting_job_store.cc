#include "tests/server/store/fault_injecting_job_store.h"

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"

namespace qnet::server::testing {
FaultInjectingJobStore::FaultInjectingJobStore(std::unique_ptr<JobStore> inner)
    : inner_(std::move(inner)) {}

FaultInjectingJobStore::~FaultInjectingJobStore() { Close(); }

void FaultInjectingJobStore::FailWrites(int64_t count, int64_t skip) {
  std::lock_guard<std::mutex> lock(mu_);
  fail_ = count;
  skip_ = skip;
}

void FaultInjectingJobStore::Heal() { FailWrites(0); }

void FaultInjectingJobStore::HoldWrites() {
  std::lock_guard<std::mutex> lock(mu_);
  holding_ = true;
}

void FaultInjectingJobStore::ReleaseWrites(bool fail) {
  std::vector<std::pair<StoreWrite::Outcome, StoreWrite>> sent;
  {
    // All handed on under the lock, so the inner store sees them in call order (and may commit
    // them together); their callers learn each answer once the inner store gives it.
    std::lock_guard<std::mutex> lock(mu_);
    holding_ = false;
    for (HeldWrite& w : held_) sent.emplace_back(w.outcome, Forward(w.record, w.create, fail));
    held_.clear();
  }
  for (auto& [outcome, write] : sent) outcome->Set(write.Wait());
}

int64_t FaultInjectingJobStore::writes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return writes_;
}

int64_t FaultInjectingJobStore::refused() const {
  std::lock_guard<std::mutex> lock(mu_);
  return refused_;
}

int64_t FaultInjectingJobStore::held_writes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<int64_t>(held_.size());
}

StoreWrite FaultInjectingJobStore::Create(const JobRecord& record) {
  return Write(record, /*create=*/true);
}

StoreWrite FaultInjectingJobStore::Save(const JobRecord& record) {
  return Write(record, /*create=*/false);
}

StoreWrite FaultInjectingJobStore::Write(const JobRecord& record, bool create) {
  std::lock_guard<std::mutex> lock(mu_);
  ++writes_;
  bool refuse = false;
  if (skip_ > 0) {
    --skip_;
  } else if (fail_ != 0) {
    refuse = true;
    if (fail_ > 0) --fail_;
  }
  if (!holding_ || refuse) return Forward(record, create, refuse);
  held_.push_back({record, create, nullptr});
  return StoreWrite::Pending(&held_.back().outcome);
}

StoreWrite FaultInjectingJobStore::Forward(const JobRecord& record, bool create, bool refuse) {
  if (refuse) {
    ++refused_;
    return StoreWrite::Done(absl::UnavailableError(
        absl::StrCat("injected fault: write of job ", record.job.id(), " refused")));
  }
  return create ? inner_->Create(record) : inner_->Save(record);
}

absl::StatusOr<std::optional<JobRecord>> FaultInjectingJobStore::Get(absl::string_view id) {
  return inner_->Get(id);
}

absl::StatusOr<std::optional<JobRecord>> FaultInjectingJobStore::FindByRequestId(
    absl::string_view request_id) {
  return inner_->FindByRequestId(request_id);
}

absl::StatusOr<JobPage> FaultInjectingJobStore::List(qnet::v1::JobState state, int64_t before_seq,
                                                     int limit) {
  return inner_->List(state, before_seq, limit);
}

absl::Status FaultInjectingJobStore::ForEachActive(const std::function<void(JobRecord)>& fn) {
  return inner_->ForEachActive(fn);
}

absl::StatusOr<std::map<qnet::v1::JobState, int64_t>> FaultInjectingJobStore::CountByState() {
  return inner_->CountByState();
}

absl::StatusOr<int64_t> FaultInjectingJobStore::MaxSeq() { return inner_->MaxSeq(); }

StoreWrite FaultInjectingJobStore::Delete(absl::string_view id) { return inner_->Delete(id); }

absl::StatusOr<int64_t> FaultInjectingJobStore::DiskBytes() { return inner_->DiskBytes(); }

void FaultInjectingJobStore::Close() {
  ReleaseWrites();
  inner_->Close();
}

int64_t FaultInjectingJobStore::commits() const { return inner_->commits(); }

}  // namespace qnet::server::testing
