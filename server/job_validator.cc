#include "server/job_validator.h"

#include <cmath>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "common/input_normalization.h"
#include "common/job_limits.h"
#include "server/model_catalog.h"
#include "server/torchscript_archive.h"

namespace qnet::server {
namespace {

constexpr const char* kExportFormats[] = {"torchscript", "onnx", "packed", "metrics"};
constexpr size_t kMaxErrors = 10;  // problems named in one message

// Clips what a client sent before quoting it back.
std::string Quote(absl::string_view s) {
  std::string out = "\"";
  for (char c : s.substr(0, 80)) out += (c >= 0x20 && c < 0x7f) ? c : '?';
  if (s.size() > 80) out += "...";
  return out + "\"";
}

template <typename T>
void CheckRange(absl::string_view field, T value, T lo, T hi, std::vector<std::string>* errors) {
  if (value < lo || value > hi) {
    errors->push_back(absl::StrCat(field, " must be in ", lo, "..", hi, " (got ", value, ")"));
  }
}

}  // namespace

JobValidator::JobValidator(const DatasetRegistry* datasets, const BlobStore* blobs)
    : datasets_(datasets), blobs_(blobs) {}

absl::Status JobValidator::ValidateRequestId(absl::string_view request_id) {
  if (request_id.size() > 128) {
    return absl::InvalidArgumentError("request_id must be at most 128 characters");
  }
  for (char c : request_id) {
    if (c < 0x21 || c > 0x7e) {
      return absl::InvalidArgumentError(
          "request_id must be printable ASCII without spaces (e.g. a UUID)");
    }
  }
  return absl::OkStatus();
}

void JobValidator::CheckModel(const std::string& model, std::vector<std::string>* errors) const {
  if (model.empty()) {
    errors->push_back(absl::StrCat("model is required: one of ", ZooModelNames(),
                                   ", or sha256:<hex> of an uploaded TorchScript archive"));
    return;
  }
  if (absl::StartsWith(model, "zoo:")) {
    if (FindZooModel(model) == nullptr) {
      errors->push_back(
          absl::StrCat("unknown zoo model ", Quote(model), "; known: ", ZooModelNames()));
    }
    return;
  }
  if (!absl::StartsWith(model, "sha256:")) {
    errors->push_back(absl::StrCat("model ", Quote(model), " must be one of ", ZooModelNames(),
                                   ", or sha256:<hex> of an uploaded TorchScript archive"));
    return;
  }
  if (absl::Status s = CheckDigest(model, "model digest"); !s.ok()) {
    errors->push_back(std::string(s.message()));
    return;
  }
  {
    absl::MutexLock lock(&mu_);
    if (checked_models_.contains(model)) return;
  }
  absl::StatusOr<int64_t> size = blobs_->Stat(model);
  if (!size.ok()) {
    errors->push_back(
        absl::IsNotFound(size.status())
            ? absl::StrCat("model blob ", model,
                           " not uploaded; upload the TorchScript file with BlobService.Upload "
                           "(qnet upload) first")
            : absl::StrCat("model blob ", model, ": ", size.status().message()));
    return;
  }
  if (absl::Status s = CheckTorchScriptArchive(blobs_->PathOf(model)); !s.ok()) {
    errors->push_back(absl::StrCat("model blob ", model, " is ", s.message(),
                                   "; save it with torch.jit.save(torch.jit.script(model), path)"));
    return;
  }
  absl::MutexLock lock(&mu_);
  checked_models_.insert(model);
}

absl::Status JobValidator::Validate(const qnet::v1::JobSpec& spec) const {
  std::vector<std::string> errors;
  CheckModel(spec.model(), &errors);

  const std::string known =
      datasets_->empty() ? std::string("none configured (server flag --dataset NAME=FORMAT:DIR)")
                         : datasets_->Names();
  if (spec.dataset().empty()) {
    errors.push_back(absl::StrCat("dataset is required; known datasets: ", known));
  } else if (!DatasetRegistry::IsValidName(spec.dataset())) {
    errors.push_back(absl::StrCat("dataset ", Quote(spec.dataset()),
                                  " is not a dataset name (names only, never paths); known "
                                  "datasets: ",
                                  known));
  } else if (datasets_->Find(spec.dataset()) == nullptr) {
    errors.push_back(
        absl::StrCat("unknown dataset ", Quote(spec.dataset()), "; known datasets: ", known));
  }
  const qnet::v1::InputNormalization& norm = spec.input_normalization();
  const std::vector<double> mean(norm.mean().begin(), norm.mean().end());
  const std::vector<double> std(norm.std().begin(), norm.std().end());
  if (absl::Status s = CheckInputNormalization(mean, std); !s.ok()) {
    errors.push_back(absl::StrCat("input_normalization: ", s.message()));
  } else if (const DatasetEntry* d = datasets_->Find(spec.dataset());
             d != nullptr && !mean.empty() &&
             mean.size() != static_cast<size_t>(d->info.channels())) {
    errors.push_back(absl::StrCat("input_normalization gives ", mean.size(),
                                  " value(s) per list but dataset ", Quote(spec.dataset()), " has ",
                                  d->info.channels(), " channel(s)"));
  }

  CheckRange("weight_bits", spec.weight_bits(), 1, 8, &errors);
  CheckRange("activation_bits (0 = float activations)", spec.activation_bits(), 0, 8, &errors);
  if (spec.weight_levels_size() > 0) {
    if (spec.weight_levels_size() < 2 || spec.weight_levels_size() > 256) {
      errors.push_back(absl::StrCat("weight_levels must list 2..256 levels (got ",
                                    spec.weight_levels_size(), ")"));
    }
    for (int i = 0; i < spec.weight_levels_size(); ++i) {
      if (!std::isfinite(spec.weight_levels(i))) {
        errors.push_back("weight_levels must be finite numbers");
        break;
      }
      if (i > 0 && !(spec.weight_levels(i) > spec.weight_levels(i - 1))) {
        errors.push_back("weight_levels must be sorted ascending and distinct");
        break;
      }
    }
  }

  const qnet::v1::TrainingSettings& t = spec.training();
  CheckRange("training.epochs", t.epochs(), 0, 1000, &errors);
  CheckRange("training.pretrain_epochs", t.pretrain_epochs(), 0, 1000, &errors);
  CheckRange("training.batch_size", t.batch_size(), 0, 65536, &errors);
  if (!std::isfinite(t.learning_rate()) || t.learning_rate() < 0 || t.learning_rate() > 10) {
    errors.push_back(
        absl::StrCat("training.learning_rate must be in 0..10 (got ", t.learning_rate(), ")"));
  }
  if (!(t.temperature_slope() >= 0 && t.temperature_slope() <= kMaxTemperatureSlope)) {
    errors.push_back(absl::StrCat("training.temperature_slope must be in 0..", kMaxTemperatureSlope,
                                  " (got ", t.temperature_slope(), ")"));
  }
  if (t.has_distill_weight() && !(t.distill_weight() >= 0 && t.distill_weight() <= 1)) {
    errors.push_back(
        absl::StrCat("training.distill_weight must be in 0..1 (got ", t.distill_weight(), ")"));
  }
  if (t.max_train_samples() < 0) errors.push_back("training.max_train_samples must be >= 0");
  if (t.max_test_samples() < 0) errors.push_back("training.max_test_samples must be >= 0");

  std::vector<absl::string_view> seen;
  if (spec.export_formats_size() > 4) {
    errors.push_back(absl::StrCat("export_formats lists ", spec.export_formats_size(),
                                  " entries; choose from torchscript, onnx, packed, metrics"));
  }
  for (const std::string& f : spec.export_formats()) {
    if (errors.size() > kMaxErrors) break;
    if (std::find(std::begin(kExportFormats), std::end(kExportFormats), f) ==
        std::end(kExportFormats)) {
      errors.push_back(absl::StrCat("unknown export format ", Quote(f),
                                    "; choose from torchscript, onnx, packed, metrics"));
    } else if (std::find(seen.begin(), seen.end(), f) != seen.end()) {
      errors.push_back(absl::StrCat("export format ", Quote(f), " is listed twice"));
    }
    seen.push_back(f);
  }

  if (errors.empty()) return absl::OkStatus();
  if (errors.size() > kMaxErrors) {
    const size_t more = errors.size() - kMaxErrors;
    errors.resize(kMaxErrors);
    errors.push_back(absl::StrCat("and ", more, " more"));
  }
  return absl::InvalidArgumentError(
      absl::StrCat("invalid job spec: ", absl::StrJoin(errors, "; ")));
}

}  // namespace qnet::server
