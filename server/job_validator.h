// JobValidator: checks a JobSpec (and request_id) before the server accepts a job, so bad input
// is refused up front with INVALID_ARGUMENT and a message naming every problem found, instead of
// failing later on a worker. Models must be a zoo name or the digest of an uploaded TorchScript
// archive; datasets must be registry names; bits, levels, epochs, batch sizes and export formats
// must be in range. Thread-safe.
//
//   JobValidator validator(&datasets, &blobs);
//   if (absl::Status s = validator.Validate(request.spec()); !s.ok()) return ToGrpcStatus(s);
#ifndef QNET_SERVER_JOB_VALIDATOR_H_
#define QNET_SERVER_JOB_VALIDATOR_H_

#include <string>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "qnet/v1/job.pb.h"
#include "server/blob_store.h"
#include "server/dataset_registry.h"

namespace qnet::server {

class JobValidator {
 public:
  // Both must outlive the validator.
  JobValidator(const DatasetRegistry* datasets, const BlobStore* blobs);

  absl::Status Validate(const qnet::v1::JobSpec& spec) const;
  // Printable ASCII, at most 128 characters ("" = no idempotency).
  static absl::Status ValidateRequestId(absl::string_view request_id);

 private:
  // Appends the model's problems to `errors`.
  void CheckModel(const std::string& model, std::vector<std::string>* errors) const;

  const DatasetRegistry* const datasets_;
  const BlobStore* const blobs_;
  // Blobs are immutable, so a digest that passed the archive check once always does.
  mutable absl::Mutex mu_;
  mutable absl::flat_hash_set<std::string> checked_models_ ABSL_GUARDED_BY(mu_);
};

}  // namespace qnet::server

#endif  // QNET_SERVER_JOB_VALIDATOR_H_
