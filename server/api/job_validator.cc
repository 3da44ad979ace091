#include "server/api/job_validator.h"

#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/digest.h"
#include "common/job/job_spec.h"
#include "server/blobs/onnx_model_check.h"
#include "server/blobs/torchscript_archive.h"
#include "spdlog/spdlog.h"

namespace qnet::server {

namespace {

constexpr size_t kMaxCachedVerdicts = 4096;

}  // namespace

JobValidator::JobValidator(const DatasetRegistry* datasets, const BlobStore* blobs,
                           job::JobLimits limits)
    : datasets_(datasets), blobs_(blobs), limits_(limits) {}

absl::Status JobValidator::ModelVerdict(const std::string& digest) const {
  {
    absl::MutexLock lock(&mu_);
    if (auto it = verdicts_.find(digest); it != verdicts_.end()) return it->second;
  }
  // A model is a TorchScript archive or, failing that, an ONNX ModelProto.
  const std::string path = blobs_->PathOf(digest);
  absl::Status verdict = CheckTorchScriptArchive(path);
  if (absl::IsInvalidArgument(verdict)) {
    absl::Status onnx = CheckOnnxModel(path);
    verdict =
        absl::IsInvalidArgument(onnx)
            ? absl::InvalidArgumentError(absl::StrCat(verdict.message(), " and ", onnx.message()))
            : onnx;
  }
  if (!verdict.ok() && !absl::IsInvalidArgument(verdict)) return verdict;  // may pass next time
  absl::MutexLock lock(&mu_);
  if (verdicts_.emplace(digest, verdict).second) {
    verdict_order_.push_back(digest);
    if (verdict_order_.size() > kMaxCachedVerdicts) {
      verdicts_.erase(verdict_order_.front());
      verdict_order_.pop_front();
    }
  }
  return verdict;
}

void JobValidator::CheckModelBlob(const std::string& digest,
                                  std::vector<std::string>* errors) const {
  absl::Status s = blobs_->Stat(digest).status();
  if (absl::IsNotFound(s)) {
    errors->push_back(absl::StrCat("model blob ", digest,
                                   " not uploaded; upload the TorchScript file with "
                                   "BlobService.Upload (qnet upload) first"));
    return;
  }
  if (s.ok()) s = ModelVerdict(digest);
  if (absl::IsInvalidArgument(s)) {
    errors->push_back(absl::StrCat(
        "model blob ", digest, " is ", s.message(),
        "; save it with torch.jit.save(torch.jit.script(model), path) or torch.onnx.export"));
  } else if (!s.ok()) {
    // The server's own trouble (its files are its business): logged, not told.
    spdlog::error("model blob {}: {}", digest, std::string(s.message()));
    errors->push_back(
        absl::StrCat("model blob ", digest, " could not be read on the server; try again later"));
  }
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
  std::vector<std::string> errors = job::JobSpecProblems(spec, {.limits = limits_});
  if (absl::StartsWith(spec.model(), "sha256:") && IsValidDigest(spec.model())) {
    CheckModelBlob(spec.model(), &errors);
  }
  CheckDataset(spec, &errors);
  return job::ProblemsToStatus(std::move(errors));
}

}  // namespace qnet::server
