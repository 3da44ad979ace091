// The metrics artifact (metrics.json): a job's accuracy (full precision and quantized, soft and
// hard, per-epoch curves), sizes, device, bit widths, settings and the input normalisation, as one
// JSON document.
//
//   nlohmann::json j = MetricsJson(result.metrics, run);  // run.spec with defaults resolved
//   absl::Status s = WriteJsonFile(out_dir + "/metrics.json", j);
#ifndef QNET_WORKERS_ENGINE_EXPORT_METRICS_JSON_H_
#define QNET_WORKERS_ENGINE_EXPORT_METRICS_JSON_H_

#include <string>

#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "workers/engine/job_run.h"

namespace qnet::engine {

// Top-level keys: float_top1, float_top5, quantized_top1, quantized_top5, soft_top1, hard_top1
// (fractions), float_size_bytes, packed_size_bytes, compression_ratio, device, training_layout
// ("channels_last" or "contiguous": how training stored the weights), bits
// {weight, activation, weight_levels}, epochs [{epoch, phase, train_loss, temperature, soft_top1,
// hard_top1}], parity {float_top1, quantized_top1, torchscript_top1, onnx_top1: each artifact's
// top-1 as loaded back from its file (model.onnx run by ONNX Runtime), null when not measured},
// settings {...}, input_normalization (below), preprocessing (PreprocessingJson,
// preprocessing_record.h), class_names and restored_batch_norms (the submodules the ONNX importer
// put back behind folded convolutions; empty for any other model).
nlohmann::json MetricsJson(const JobMetrics& metrics, const JobRun& run);

// How the artifacts' inputs are prepared: {"pixel_scale": 1/255, "mean": [...], "std": [...]},
// x' = (pixel * pixel_scale - mean[c]) / std[c]. In metrics.json and manifest.json.
nlohmann::json InputNormalizationJson(const JobMetrics& metrics);

// Pretty-printed, written atomically.
absl::Status WriteJsonFile(const std::string& path, const nlohmann::json& json);

}  // namespace qnet::engine

#endif  // QNET_WORKERS_ENGINE_EXPORT_METRICS_JSON_H_
