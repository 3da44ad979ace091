#include "client/cli/job_spec_flags.h"

#include <cerrno>
#include <cmath>
#include <cstdlib>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace qnet::cli {

ModelSource ClassifyModel(absl::string_view model) {
  if (absl::StartsWith(model, "zoo:")) return ModelSource::kZoo;
  if (absl::StartsWith(model, "sha256:")) return ModelSource::kDigest;
  return ModelSource::kLocalFile;
}

absl::StatusOr<std::vector<double>> ParseNumberList(absl::string_view text,
                                                    absl::string_view flag) {
  std::vector<double> values;
  for (absl::string_view item : absl::StrSplit(text, ',', absl::SkipWhitespace())) {
    const std::string word(absl::StripAsciiWhitespace(item));
    char* end = nullptr;
    errno = 0;
    const double value = std::strtod(word.c_str(), &end);
    if (end != word.c_str() + word.size() || errno == ERANGE || !std::isfinite(value)) {
      return absl::InvalidArgumentError(
          absl::StrCat(flag, ": '", word, "' is not a number (expected e.g. -1,0,1)"));
    }
    values.push_back(value);
  }
  return values;
}

std::vector<std::string> ParseWordList(absl::string_view text) {
  std::vector<std::string> words;
  for (absl::string_view item : absl::StrSplit(text, ',', absl::SkipWhitespace())) {
    words.emplace_back(absl::StripAsciiWhitespace(item));
  }
  return words;
}

absl::StatusOr<v1::JobSpec> BuildJobSpec(const SubmitFlags& flags, const std::string& model_ref) {
  v1::JobSpec spec;
  spec.set_model(model_ref);
  spec.set_dataset(flags.dataset);
  spec.set_weight_bits(flags.weight_bits);
  spec.set_activation_bits(flags.activation_bits);
  if (!flags.weight_levels.empty()) {
    absl::StatusOr<std::vector<double>> levels =
        ParseNumberList(flags.weight_levels, "--weight-levels");
    if (!levels.ok()) return levels.status();
    for (double level : *levels) spec.add_weight_levels(level);
  }
  absl::StatusOr<std::vector<double>> mean = ParseNumberList(flags.input_mean, "--input-mean");
  if (!mean.ok()) return mean.status();
  absl::StatusOr<std::vector<double>> std = ParseNumberList(flags.input_std, "--input-std");
  if (!std.ok()) return std.status();
  if (mean->size() != std->size()) {
    return absl::InvalidArgumentError(
        "--input-mean and --input-std go together, one value per image channel each");
  }
  if (!mean->empty()) {
    v1::InputNormalization& norm = *spec.mutable_input_normalization();
    norm.mutable_mean()->Add(mean->begin(), mean->end());
    norm.mutable_std()->Add(std->begin(), std->end());
  }
  v1::TrainingSettings& t = *spec.mutable_training();
  t.set_epochs(flags.epochs);
  t.set_pretrain_epochs(flags.pretrain_epochs);
  t.set_batch_size(flags.batch_size);
  t.set_learning_rate(flags.learning_rate);
  t.set_max_train_samples(flags.max_train_samples);
  t.set_max_test_samples(flags.max_test_samples);
  t.set_seed(flags.seed);
  t.set_temperature_slope(flags.temperature_slope);
  if (flags.distill_weight) t.set_distill_weight(*flags.distill_weight);
  t.set_quantize_first_last(flags.quantize_first_last);
  t.set_learn_thresholds(flags.learn_thresholds);
  for (std::string& format : ParseWordList(flags.export_formats)) {
    spec.add_export_formats(std::move(format));
  }
  spec.set_priority(flags.priority);
  return spec;
}

}  // namespace qnet::cli
