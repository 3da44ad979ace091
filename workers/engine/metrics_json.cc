#include "workers/engine/metrics_json.h"

#include "common/atomic_file.h"

namespace qnet::engine {

nlohmann::json MetricsJson(const JobMetrics& m, const JobConfig& config) {
  nlohmann::json epochs = nlohmann::json::array();
  for (const EpochRecord& r : m.epochs) {
    epochs.push_back({{"epoch", r.epoch},
                      {"phase", r.phase},
                      {"train_loss", r.train_loss},
                      {"temperature", r.temperature},
                      {"soft_top1", r.soft_top1},
                      {"hard_top1", r.hard_top1}});
  }
  const TrainSettings& t = config.train;
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
          {"bits",
           {{"weight", config.weight_bits},
            {"activation", config.activation_bits},
            {"weight_levels", config.weight_levels}}},
          {"epochs", epochs},
          {"settings",
           {{"model", config.model},
            {"dataset_format", config.dataset_format},
            {"epochs", t.epochs},
            {"pretrain_epochs", t.pretrain_epochs},
            {"batch_size", t.batch_size},
            {"learning_rate", t.learning_rate},
            {"max_train_samples", t.max_train_samples},
            {"max_test_samples", t.max_test_samples},
            {"seed", t.seed},
            {"temperature_slope", t.temperature_slope},
            {"distill_weight", t.distill_weight},
            {"quantize_first_last", t.quantize_first_last},
            {"learn_thresholds", t.learn_thresholds},
            {"device", t.device}}},
          {"input_normalization", InputNormalizationJson(m)}};
}

nlohmann::json InputNormalizationJson(const JobMetrics& m) {
  return {{"pixel_scale", 1.0 / 255.0}, {"mean", m.input_mean}, {"std", m.input_std}};
}

absl::Status WriteJsonFile(const std::string& path, const nlohmann::json& json) {
  return WriteFileAtomically(path, json.dump(2) + "\n");
}

}  // namespace qnet::engine
