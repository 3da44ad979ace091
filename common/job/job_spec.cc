#include "common/job/job_spec.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/digest.h"
#include "common/input_normalization.h"
#include "common/job/catalog.h"

namespace qnet::job {
namespace {

constexpr size_t kMaxErrors = 10;  // problems named in one message

void CheckRange(absl::string_view field, int value, IntLimit limit,
                std::vector<std::string>* errors) {
  if (value < limit.min || value > limit.max) {
    errors->push_back(
        absl::StrCat(field, " must be in ", limit.min, "..", limit.max, " (got ", value, ")"));
  }
}

void CheckModel(const std::string& model, const ValidateOptions& options,
                std::vector<std::string>* errors) {
  const std::string sources =
      absl::StrCat(ZooModelNames(), ", ",
                   options.allow_model_path ? "or a TorchScript file"
                                            : "or sha256:<hex> of an uploaded TorchScript archive");
  if (model.empty()) {
    errors->push_back(absl::StrCat("model is required: one of ", sources));
  } else if (absl::StartsWith(model, "zoo:")) {
    if (FindZooModel(model) == nullptr) {
      errors->push_back(
          absl::StrCat("unknown zoo model ", QuoteClientText(model), "; known: ", ZooModelNames()));
    }
  } else if (absl::StartsWith(model, "sha256:")) {
    if (!IsValidDigest(model)) {
      errors->push_back(absl::StrCat("model digest ", QuoteClientText(model),
                                     " is not a digest: expected sha256:<64 lowercase hex>"));
    }
  } else if (!options.allow_model_path) {
    errors->push_back(absl::StrCat("model ", QuoteClientText(model), " must be one of ", sources));
  }
}

void CheckWeightLevels(const v1::JobSpec& spec, std::vector<std::string>* errors) {
  if (spec.weight_levels_size() == 0) return;
  if (spec.weight_levels_size() < kWeightLevelCount.min ||
      spec.weight_levels_size() > kWeightLevelCount.max) {
    errors->push_back(absl::StrCat("weight_levels must list ", kWeightLevelCount.min, "..",
                                   kWeightLevelCount.max, " levels (got ",
                                   spec.weight_levels_size(), ")"));
  }
  for (int i = 0; i < spec.weight_levels_size(); ++i) {
    if (!std::isfinite(spec.weight_levels(i))) {
      errors->push_back("weight_levels must be finite numbers");
      return;
    }
    if (i > 0 && !(spec.weight_levels(i) > spec.weight_levels(i - 1))) {
      errors->push_back("weight_levels must be sorted ascending and distinct");
      return;
    }
  }
}

void CheckTraining(const v1::TrainingSettings& t, std::vector<std::string>* errors) {
  if (t.has_epochs()) CheckRange("training.epochs", t.epochs(), kEpochs, errors);
  CheckRange("training.pretrain_epochs", t.pretrain_epochs(), kPretrainEpochs, errors);
  if (t.batch_size() != 0) CheckRange("training.batch_size", t.batch_size(), kBatchSize, errors);
  if (!(t.learning_rate() >= 0 && t.learning_rate() <= kMaxLearningRate)) {
    errors->push_back(absl::StrCat("training.learning_rate must be in 0..", kMaxLearningRate,
                                   " (got ", t.learning_rate(), ")"));
  }
  if (!(t.temperature_slope() >= 0 && t.temperature_slope() <= kMaxTemperatureSlope)) {
    errors->push_back(absl::StrCat("training.temperature_slope must be in 0..",
                                   kMaxTemperatureSlope, " (got ", t.temperature_slope(), ")"));
  }
  if (t.has_distill_weight() && !(t.distill_weight() >= 0 && t.distill_weight() <= 1)) {
    errors->push_back(
        absl::StrCat("training.distill_weight must be in 0..1 (got ", t.distill_weight(), ")"));
  }
  if (t.max_train_samples() < 0) errors->push_back("training.max_train_samples must be >= 0");
  if (t.max_test_samples() < 0) errors->push_back("training.max_test_samples must be >= 0");
}

// What the job costs against `limits`, once each setting is within the schema's range.
void CheckCost(const v1::JobSpec& spec, const JobLimits& limits, std::vector<std::string>* errors) {
  if (std::abs(static_cast<int64_t>(spec.priority())) > limits.max_priority) {
    errors->push_back(absl::StrCat("priority must be in -", limits.max_priority, "..",
                                   limits.max_priority, " (got ", spec.priority(), ")"));
  }
  const v1::TrainingSettings& t = spec.training();
  const int epochs = t.has_epochs() ? t.epochs() : kDefaultEpochs;
  const auto within = [](int value, IntLimit limit) {
    return value >= limit.min && value <= limit.max;
  };
  // Settings out of the schema's range are named by CheckTraining already.
  if (within(epochs, kEpochs) && within(t.pretrain_epochs(), kPretrainEpochs) &&
      epochs + t.pretrain_epochs() > limits.max_epochs) {
    errors->push_back(absl::StrCat("training.epochs + training.pretrain_epochs must be at most ",
                                   limits.max_epochs, " (got ", epochs, " + ", t.pretrain_epochs(),
                                   ")"));
  }
  const int batch_size = t.batch_size() == 0 ? kDefaultBatchSize : t.batch_size();
  if (within(batch_size, kBatchSize) && batch_size > limits.max_batch_size) {
    errors->push_back(absl::StrCat("training.batch_size must be at most ", limits.max_batch_size,
                                   " (got ", batch_size, t.batch_size() == 0 ? ", the default" : "",
                                   ")"));
  }
  for (const auto& [field, value] :
       {std::pair<absl::string_view, int64_t>{"training.max_train_samples", t.max_train_samples()},
        {"training.max_test_samples", t.max_test_samples()}}) {
    if (value > limits.max_samples) {
      errors->push_back(absl::StrCat(field, " must be at most ", limits.max_samples, " (got ",
                                     value, "; 0 = the whole split)"));
    }
  }
}

void CheckExportFormats(const v1::JobSpec& spec, std::vector<std::string>* errors) {
  const size_t known = ExportFormats().size();
  if (static_cast<size_t>(spec.export_formats_size()) > known) {
    errors->push_back(absl::StrCat("export_formats lists ", spec.export_formats_size(),
                                   " entries; choose from ", ExportFormatNames()));
  }
  std::vector<absl::string_view> seen;
  for (const std::string& f : spec.export_formats()) {
    if (errors->size() > kMaxErrors) break;  // a huge list costs no more than the message shows
    if (FindExportFormat(f) == nullptr) {
      errors->push_back(absl::StrCat("unknown export format ", QuoteClientText(f), "; choose from ",
                                     ExportFormatNames()));
    } else if (std::find(seen.begin(), seen.end(), f) != seen.end()) {
      errors->push_back(absl::StrCat("export format ", QuoteClientText(f), " is listed twice"));
    }
    seen.push_back(f);
  }
}

void CheckPreprocessing(const v1::JobSpec& spec, std::vector<std::string>* errors) {
  if (!spec.input_shape().empty()) {
    if (absl::StatusOr<InputShape> shape = ParseInputShape(spec.input_shape()); !shape.ok()) {
      errors->push_back(std::string(shape.status().message()));
    }
  }
  const v1::Preprocessing& p = spec.preprocessing();
  CheckRange("preprocessing.resize_size", p.resize_size(), kResizeSize, errors);
  const double lo = p.crop_scale_min(), hi = p.crop_scale_max() == 0 ? 1.0 : p.crop_scale_max();
  if (!(lo >= 0 && lo <= 1 && hi > 0 && hi <= 1 && lo <= hi)) {
    errors->push_back(absl::StrCat(
        "preprocessing.crop_scale_min..crop_scale_max must satisfy 0 <= min <= max <= 1 (got ",
        p.crop_scale_min(), "..", p.crop_scale_max(), ")"));
  }
  if (p.has_holdout_fraction() &&
      !(p.holdout_fraction() > 0 && p.holdout_fraction() <= kMaxHoldoutFraction)) {
    errors->push_back(absl::StrCat("preprocessing.holdout_fraction must be in (0, ",
                                   kMaxHoldoutFraction, "] (got ", p.holdout_fraction(), ")"));
  }
}

}  // namespace

absl::StatusOr<InputShape> ParseInputShape(absl::string_view text) {
  const auto malformed = [&] {
    return absl::InvalidArgumentError(absl::StrCat(
        "input_shape ", QuoteClientText(text), " must be CxHxW, e.g. 3x32x32 (channels ",
        kInputChannels.min, "..", kInputChannels.max, ", height and width ", kInputSide.min, "..",
        kInputSide.max, ")"));
  };
  std::vector<absl::string_view> parts = absl::StrSplit(text, 'x');
  if (parts.size() != 3) return malformed();
  int sides[3];
  for (int i = 0; i < 3; ++i) {
    if (parts[i].empty() || parts[i].size() > 5 ||
        !std::all_of(parts[i].begin(), parts[i].end(), absl::ascii_isdigit) ||
        !absl::SimpleAtoi(parts[i], &sides[i])) {
      return malformed();
    }
  }
  const InputShape shape{sides[0], sides[1], sides[2]};
  if (shape.channels < kInputChannels.min || shape.channels > kInputChannels.max ||
      shape.height < kInputSide.min || shape.height > kInputSide.max ||
      shape.width < kInputSide.min || shape.width > kInputSide.max) {
    return malformed();
  }
  return shape;
}

std::string FormatInputShape(const InputShape& shape) {
  return absl::StrCat(shape.channels, "x", shape.height, "x", shape.width);
}

v1::JobSpec WithDefaults(const v1::JobSpec& spec) {
  v1::JobSpec out = spec;
  if (out.weight_levels_size() == 0) out.set_weight_bits(EffectiveWeightBits(out));
  v1::TrainingSettings& t = *out.mutable_training();
  if (!t.has_epochs()) t.set_epochs(kDefaultEpochs);
  if (t.batch_size() == 0) t.set_batch_size(kDefaultBatchSize);
  if (!t.has_seed()) t.set_seed(kDefaultSeed);
  if (!out.preprocessing().has_holdout_fraction()) {
    out.mutable_preprocessing()->set_holdout_fraction(kDefaultHoldoutFraction);
  }
  if (out.export_formats_size() == 0) {
    for (const v1::ExportFormat& f : ExportFormats()) out.add_export_formats(f.name());
  }
  return out;
}

absl::Status ValidateJobSpec(const v1::JobSpec& spec, const ValidateOptions& options) {
  return ProblemsToStatus(JobSpecProblems(spec, options));
}

std::vector<std::string> JobSpecProblems(const v1::JobSpec& spec, const ValidateOptions& options) {
  std::vector<std::string> errors;
  if (const size_t bytes = spec.ByteSizeLong(); bytes > kMaxJobSpecBytes) {
    // Its lists are huge: judging them one by one would only repeat this.
    errors.push_back(absl::StrCat("the job spec is ", bytes, " bytes; at most ", kMaxJobSpecBytes,
                                  " bytes are accepted"));
    return errors;
  }
  CheckModel(spec.model(), options, &errors);
  if (spec.dataset().empty()) errors.push_back("dataset is required");
  const v1::InputNormalization& norm = spec.input_normalization();
  if (absl::Status s =
          CheckInputNormalization(std::vector<double>(norm.mean().begin(), norm.mean().end()),
                                  std::vector<double>(norm.std().begin(), norm.std().end()));
      !s.ok()) {
    errors.push_back(absl::StrCat("input_normalization: ", s.message()));
  }
  // Explicit levels stand in for the bits; otherwise unset bits take the default.
  if (spec.has_weight_bits() || spec.weight_levels_size() == 0) {
    CheckRange("weight_bits", EffectiveWeightBits(spec), kWeightBits, &errors);
  }
  CheckRange("activation_bits (0 = float activations)", spec.activation_bits(), kActivationBits,
             &errors);
  CheckWeightLevels(spec, &errors);
  CheckTraining(spec.training(), &errors);
  CheckCost(spec, options.limits, &errors);
  CheckExportFormats(spec, &errors);
  CheckPreprocessing(spec, &errors);
  return errors;
}

absl::Status ProblemsToStatus(std::vector<std::string> errors) {
  if (errors.empty()) return absl::OkStatus();
  if (errors.size() > kMaxErrors) {
    const size_t more = errors.size() - kMaxErrors;
    errors.resize(kMaxErrors);
    errors.push_back(absl::StrCat("and ", more, " more"));
  }
  return absl::InvalidArgumentError(
      absl::StrCat("invalid job spec: ", absl::StrJoin(errors, "; ")));
}

int EffectiveWeightBits(const v1::JobSpec& spec) {
  return spec.has_weight_bits() ? spec.weight_bits() : kDefaultWeightBits;
}

std::string QuoteClientText(absl::string_view text) {
  std::string out = "\"";
  for (char c : text.substr(0, 80)) out += (c >= 0x20 && c < 0x7f) ? c : '?';
  if (text.size() > 80) out += "...";
  return out + "\"";
}

absl::Status ValidateRequestId(absl::string_view request_id) {
  if (request_id.size() > kMaxRequestIdBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("request_id must be at most ", kMaxRequestIdBytes, " characters"));
  }
  for (char c : request_id) {
    if (c < 0x21 || c > 0x7e) {
      return absl::InvalidArgumentError(
          "request_id must be printable ASCII without spaces (e.g. a UUID)");
    }
  }
  return absl::OkStatus();
}

bool IsModelReference(absl::string_view model) {
  return absl::StartsWith(model, "zoo:") || absl::StartsWith(model, "sha256:");
}

bool WantsExport(const v1::JobSpec& spec, absl::string_view format) {
  return spec.export_formats().empty() ||
         std::find(spec.export_formats().begin(), spec.export_formats().end(), format) !=
             spec.export_formats().end();
}

}  // namespace qnet::job
