#include "server/api/job_validator.h"

#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/digest.h"
#include "common/job/job_spec.h"
#include "server/blobs/onnx_model_check.h"
#include "server/blobs/torchscript_archive.h"

namespace qnet::server {

JobValidator::JobValidator(const DatasetRegistry* datasets, const BlobStore* blobs)
    : datasets_(datasets), blobs_(blobs) {}

void JobValidator::CheckModelBlob(const std::string& digest,
                                  std::vector<std::string>* errors) const {
  {
    absl::MutexLock lock(&mu_);
    if (checked_models_.contains(digest)) return;
  }
  absl::StatusOr<int64_t> size = blobs_->Stat(digest);
  if (!size.ok()) {
    errors->push_back(
        absl::IsNotFound(size.status())
            ? absl::StrCat("model blob ", digest,
                           " not uploaded; upload the TorchScript file with BlobService.Upload "
                           "(qnet upload) first")
            : absl::StrCat("model blob ", digest, ": ", size.status().message()));
    return;
  }
  const std::string path = blobs_->PathOf(digest);
  if (absl::Status s = CheckTorchScriptArchive(path); !s.ok()) {
    if (absl::Status onnx = CheckOnnxModel(path); !onnx.ok()) {
      errors->push_back(absl::StrCat(
          "model blob ", digest, " is ", s.message(), " and ", onnx.message(),
          "; save it with torch.jit.save(torch.jit.script(model), path) or torch.onnx.export"));
      return;
    }
  }
  absl::MutexLock lock(&mu_);
  checked_models_.insert(digest);
}

void JobValidator::CheckDataset(const qnet::v1::JobSpec& spec,
                                std::vector<std::string>* errors) const {
  const std::string known = datasets_->empty()
                                ? std::string(
                                      "none yet (qnet datasets upload PATH --name NAME, or the "
                                      "server flag --dataset NAME=FORMAT:PATH)")
                                : datasets_->Names();
  if (spec.dataset().empty()) {
    errors->push_back(absl::StrCat("known datasets: ", known));
    return;
  }
  if (!DatasetRegistry::IsValidName(spec.dataset())) {
    errors->push_back(absl::StrCat("dataset ", job::QuoteClientText(spec.dataset()),
                                   " is not a dataset name (names only, never paths); known "
                                   "datasets: ",
                                   known));
    return;
  }
  const std::optional<DatasetEntry> d = datasets_->Find(spec.dataset());
  if (!d.has_value()) {
    errors->push_back(absl::StrCat("unknown dataset ", job::QuoteClientText(spec.dataset()),
                                   "; known datasets: ", known));
    return;
  }
  const int channels = spec.input_normalization().mean_size();
  if (channels != 0 && channels == spec.input_normalization().std_size() &&
      channels != d->info.channels()) {
    errors->push_back(absl::StrCat(
        "input_normalization gives ", channels, " value(s) per list but dataset ",
        job::QuoteClientText(spec.dataset()), " has ", d->info.channels(), " channel(s)"));
  }
}

absl::Status JobValidator::Validate(const qnet::v1::JobSpec& spec) const {
  std::vector<std::string> errors = job::JobSpecProblems(spec, {});
  if (absl::StartsWith(spec.model(), "sha256:") && IsValidDigest(spec.model())) {
    CheckModelBlob(spec.model(), &errors);
  }
  CheckDataset(spec, &errors);
  return job::ProblemsToStatus(std::move(errors));
}

}  // namespace qnet::server
