// JobValidator: qnetd's check of a JobSpec before it accepts a job, so bad input is refused up
// front with INVALID_ARGUMENT and a message naming every problem found, instead of failing later
// on a worker. The settings are judged by job::JobSpecProblems (ValidateJobSpec's checks, which
// every process shares); this class adds what only the server knows: the model blob is uploaded
// and is a TorchScript archive, the dataset is registered, and the input normalization fits its
// channels. What one job may cost (priority, epochs, batch size, samples) is bounded by the
// operator's job::JobLimits.
// Thread-safe.
//
//   JobValidator validator(&datasets, &blobs, job::kServiceJobLimits);
//   if (absl::Status s = validator.Validate(request.spec()); !s.ok()) return ToGrpcStatus(s);
#ifndef QNET_SERVER_API_JOB_VALIDATOR_H_
#define QNET_SERVER_API_JOB_VALIDATOR_H_

#include <deque>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "common/job/job_limits.h"
#include "qnet/v1/job.pb.h"
#include "server/blobs/blob_store.h"
#include "server/datasets/dataset_registry.h"

namespace qnet::server {

class JobValidator {
 public:
  // Both must outlive the validator.
  JobValidator(const DatasetRegistry* datasets, const BlobStore* blobs,
               job::JobLimits limits = job::kServiceJobLimits);

  absl::Status Validate(const qnet::v1::JobSpec& spec) const;
  const job::JobLimits& limits() const { return limits_; }

 private:
  // Appends the problems of an uploaded model blob to `errors`.
  void CheckModelBlob(const std::string& digest, std::vector<std::string>* errors) const;
  void CheckDataset(const qnet::v1::JobSpec& spec, std::vector<std::string>* errors) const;

  // The model checks' verdict on `digest` (TorchScript or ONNX), from the cache or checked now.
  absl::Status ModelVerdict(const std::string& digest) const;

  const DatasetRegistry* const datasets_;
  const BlobStore* const blobs_;
  const job::JobLimits limits_;
  // Blobs are immutable, so a digest's verdict never changes: repeated submits of one blob, good
  // or bad, check it once. Bounded; the oldest verdict goes first.
  mutable absl::Mutex mu_;
  mutable absl::flat_hash_map<std::string, absl::Status> verdicts_ ABSL_GUARDED_BY(mu_);
  mutable std::deque<std::string> verdict_order_ ABSL_GUARDED_BY(mu_);
};

}  // namespace qnet::server

#endif  // QNET_SERVER_API_JOB_VALIDATOR_H_
