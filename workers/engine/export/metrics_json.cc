#include "workers/engine/export/metrics_json.h"

#include <optional>

#include "common/atomic_file.h"
#include "workers/engine/export/preprocessing_record.h"

namespace qnet::engine {
namespace {

nlohmann::json OptionalJson(const std::optional<double>& v) {
  return v ? nlohmann::json(*v) : nlohmann::json(nullptr);
}

}  // namespace

nlohmann::json MetricsJson(const JobMetrics& m, const JobRun& run) {
  nlohmann::json epochs = nlohmann::json::array();
  for (const EpochRecord& r : m.epochs) {
    epochs.push_back({{"epoch", r.epoch},
                      {"phase", r.phase},
                      {"train_loss", r.train_loss},
                      {"temperature", r.temperature},
                      {"soft_top1", r.soft_top1},
                      {"hard_top1", r.hard_top1}});
  }
  const v1::JobSpec& spec = run.spec;
  const v1::TrainingSettings& t = spec.training();
  return {{"float_top1", m.float_top1},
          {"float_top5", m.float_top5},
          {"quantized_top1", m.quantized_top1},
          {"quantized_top5", m.quantized_top5},
          {"soft_top1", m.soft_top1},
          {"hard_top1", m.hard_top1},
          {"float_size_bytes", m.float_size_bytes},
          {"packed_size_bytes", m.packed_size_bytes},
          {"compression_ratio", m.compression_ratio},
          {"device", m.device},
          {"training_layout", m.training_layout},
          {"bits",
           {{"weight", spec.weight_bits()},
            {"activation", spec.activation_bits()},
            {"weight_levels",
             std::vector<double>(spec.weight_levels().begin(), spec.weight_levels().end())}}},
          {"epochs", epochs},
          {"parity",
           {{"float_top1", m.float_top1},
            {"quantized_top1", m.quantized_top1},
            {"torchscript_top1", OptionalJson(m.torchscript_top1)},
            {"onnx_top1", OptionalJson(m.onnx_top1)}}},
          // The settings the job ran with, defaults resolved (0 for learning rate and
          // temperature slope, unset distill_weight: the recipe's per-phase values).
          {"settings",
           {{"model", spec.model()},
            {"dataset", spec.dataset()},
            {"dataset_format", run.context.dataset_format},
            {"epochs", t.epochs()},
            {"pretrain_epochs", t.pretrain_epochs()},
            {"batch_size", t.batch_size()},
            {"learning_rate", t.learning_rate()},
            {"max_train_samples", t.max_train_samples()},
            {"max_test_samples", t.max_test_samples()},
            {"seed", t.seed()},
            {"temperature_slope", t.temperature_slope()},
            {"distill_weight",
             t.has_distill_weight() ? nlohmann::json(t.distill_weight()) : nlohmann::json(nullptr)},
            {"quantize_first_last", t.quantize_first_last()},
            {"learn_thresholds", t.learn_thresholds()},
            {"export_formats",
             std::vector<std::string>(spec.export_formats().begin(), spec.export_formats().end())},
            {"device", run.context.device}}},
          {"input_normalization", InputNormalizationJson(m)},
          {"preprocessing", PreprocessingJson(m)},
          {"class_names", m.class_names},
          {"restored_batch_norms", m.restored_batch_norms}};
}

nlohmann::json InputNormalizationJson(const JobMetrics& m) {
  return {{"pixel_scale", 1.0 / 255.0}, {"mean", m.input_mean}, {"std", m.input_std}};
}

absl::Status WriteJsonFile(const std::string& path, const nlohmann::json& json) {
  return WriteFileAtomically(path, json.dump(2) + "\n");
}

}  // namespace qnet::engine
