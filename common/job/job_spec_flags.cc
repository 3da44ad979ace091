#include "common/job/job_spec_flags.h"

#include <cerrno>
#include <cmath>
#include <cstdlib>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/job/catalog.h"

namespace qnet::job {

void BindJobSpecFlags(CLI::App& command, JobSpecFlags& f, const BindOptions& options) {
  command.add_option("--model", f.model, options.model_help)->required();
  command.add_option("--dataset", f.dataset, options.dataset_help)->required();
  command.add_option("--weight-bits", f.weight_bits, "weight bit width, 1..8 (default 2)");
  command.add_option("--activation-bits", f.activation_bits, "activation bit width (0: float)");
  command.add_option("--weight-levels", f.weight_levels,
                     "explicit sorted weight levels, comma-separated (overrides --weight-bits)");
  command.add_option("--epochs", f.epochs, "QN fine-tuning epochs (default 3)");
  command.add_option("--pretrain-epochs", f.pretrain_epochs, "full-precision epochs first");
  command.add_option("--batch-size", f.batch_size, "training batch size (default 128)");
  command.add_option("--lr", f.learning_rate, "QN learning rate (0: the recipe's)");
  command.add_option("--max-train-samples", f.max_train_samples,
                     "train on at most N images (0: all)");
  command.add_option("--max-test-samples", f.max_test_samples,
                     "evaluate on at most N images (0: all)");
  command.add_option("--seed", f.seed, "random seed (default 1)");
  command.add_option("--temperature-slope", f.temperature_slope,
                     "QN temperature growth per epoch (0: the recipe's)");
  command.add_option("--distill-weight", f.distill_weight,
                     "weight of the float model's predictions in the QN loss, 0 (labels only) to "
                     "1 (default: the recipe's 0.5)");
  command.add_flag("--quantize-first-last", f.quantize_first_last,
                   "also quantize the first conv and last linear layer");
  command.add_flag("--learn-thresholds", f.learn_thresholds, "learn the quantizer's thresholds");
  command.add_option("--input-mean", f.input_mean,
                     "per-channel mean the model's inputs are normalised with, pixels scaled to "
                     "[0,1], comma-separated (default: the dataset's; give with --input-std)");
  command.add_option("--input-std", f.input_std,
                     "per-channel std of that normalisation, comma-separated");
  command.add_option("--export", f.export_formats,
                     absl::StrCat("artifacts to produce, comma-separated: ", ExportFormatNames(),
                                  " (default: all)"));
  command.add_option("--input-shape", f.input_shape,
                     "the input the model takes, CxHxW, e.g. 3x32x32: images are resized to it "
                     "and a one-channel dataset is repeated to three channels (default: the "
                     "dataset's shape)");
  command.add_option("--resize-size", f.resize_size,
                     "evaluation: resize the shorter side to N, then center-crop to the input "
                     "shape (default: the input height)");
  command.add_option("--random-resized-crop", f.random_resized_crop,
                     "training augmentation on/off (default: the dataset format's)");
  command.add_option("--crop-scale-min", f.crop_scale_min,
                     "smallest area fraction a random-resized crop keeps");
  command.add_option("--crop-scale-max", f.crop_scale_max,
                     "largest area fraction a random-resized crop keeps (default 1)");
  command.add_option("--horizontal-flip", f.horizontal_flip,
                     "training augmentation on/off (default: the dataset format's)");
  command.add_option("--holdout-fraction", f.holdout_fraction,
                     "fraction of the training images held out for evaluation when the dataset "
                     "has no test split (default 0.1)");
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

absl::StatusOr<v1::JobSpec> BuildJobSpec(const JobSpecFlags& flags, const std::string& model_ref) {
  v1::JobSpec spec;
  spec.set_model(model_ref);
  spec.set_dataset(flags.dataset);
  if (flags.weight_bits) spec.set_weight_bits(*flags.weight_bits);
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
  if (flags.epochs) t.set_epochs(*flags.epochs);
  t.set_pretrain_epochs(flags.pretrain_epochs);
  t.set_batch_size(flags.batch_size);
  t.set_learning_rate(flags.learning_rate);
  t.set_max_train_samples(flags.max_train_samples);
  t.set_max_test_samples(flags.max_test_samples);
  if (flags.seed) t.set_seed(*flags.seed);
  t.set_temperature_slope(flags.temperature_slope);
  if (flags.distill_weight) t.set_distill_weight(*flags.distill_weight);
  t.set_quantize_first_last(flags.quantize_first_last);
  t.set_learn_thresholds(flags.learn_thresholds);
  spec.set_input_shape(flags.input_shape);
  v1::Preprocessing& p = *spec.mutable_preprocessing();
  p.set_resize_size(flags.resize_size);
  if (flags.random_resized_crop) p.set_random_resized_crop(*flags.random_resized_crop);
  p.set_crop_scale_min(flags.crop_scale_min);
  p.set_crop_scale_max(flags.crop_scale_max);
  if (flags.horizontal_flip) p.set_horizontal_flip(*flags.horizontal_flip);
  if (flags.holdout_fraction) p.set_holdout_fraction(*flags.holdout_fraction);
  for (std::string& format : ParseWordList(flags.export_formats)) {
    spec.add_export_formats(std::move(format));
  }
  return spec;
}

}  // namespace qnet::job
