// JobValidator: qnetd's check of a JobSpec before it accepts a job, so bad input is refused up
// front with INVALID_ARGUMENT and a message naming every problem found, instead of failing later
// on a worker. The settings are judged by job::JobSpecProblems (ValidateJobSpec's checks, which
// every process shares); this class adds what only the server knows: the model blob is uploaded
// and is a TorchScript archive, the dataset is registered, and the input normalization fits its
// channels.
// Thread-safe.
//
//   JobValidator validator(&datasets, &blobs);
//   if (absl::Status s = validator.Validate(request.spec()); !s.ok()) return ToGrpcStatus(s);
#ifndef QNET_SERVER_API_JOB_VALIDATOR_H_
#define QNET_SERVER_API_JOB_VALIDATOR_H_

#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "qnet/v1/job.pb.h"
#include "server/blobs/blob_store.h"
#include "server/datasets/dataset_registry.h"

namespace qnet::server {

class JobValidator {
 public:
  // Both must outlive the validator.
  JobValidator(const DatasetRegistry* datasets, const BlobStore* blobs);

  absl::Status Validate(const qnet::v1::JobSpec& spec) const;

 private:
  // Appends the problems of an uploaded model blob to `errors`.
  void CheckModelBlob(const std::string& digest, std::vector<std::string>* errors) const;
  void CheckDataset(const qnet::v1::JobSpec& spec, std::vector<std::string>* errors) const;

  const DatasetRegistry* const datasets_;
  const BlobStore* const blobs_;
  // Blobs are immutable, so a digest that passed the archive check once always does.
  mutable absl::Mutex mu_;
  mutable absl::flat_hash_set<std::string> checked_models_ ABSL_GUARDED_BY(mu_);
};

}  // namespace qnet::server

#endif  // QNET_SERVER_API_JOB_VALIDATOR_H_
