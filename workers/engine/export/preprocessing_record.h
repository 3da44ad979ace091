// How a job's inputs were prepared, as every artifact records it next to the input normalisation
// (docs/METHOD.md, "Artifacts"): TorchScript attributes, ONNX metadata properties, and a
// "preprocessing" object with the class names in manifest.json and metrics.json.
//
//   nlohmann::json p = PreprocessingJson(result.metrics);
//   // {"input_shape": [3, 224, 224], "resize": {"size": 256, ...}, "center_crop": [224, 224],
//   //  "channel_repeat": false, "mean": [...], "std": [...], "train_augmentation": {...},
//   //  "test_split": {"source": "holdout", "fraction": 0.1, "seed": 1}}
#ifndef QNET_WORKERS_ENGINE_EXPORT_PREPROCESSING_RECORD_H_
#define QNET_WORKERS_ENGINE_EXPORT_PREPROCESSING_RECORD_H_

#include <torch/script.h>
#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "workers/engine/job_run.h"

namespace qnet::engine {

// TorchScript attribute (str, the JSON document) and ONNX metadata property of the preprocessing;
// the class names are a List[str] attribute and a JSON array property.
inline constexpr char kPreprocessingAttr[] = "qnet_preprocessing";
inline constexpr char kClassNamesAttr[] = "qnet_class_names";

// From metrics.effective_spec (input shape, preprocessing, seed), the normalisation and the
// pipeline facts JobMetrics keeps (train_crop, channel_repeat, holdout).
nlohmann::json PreprocessingJson(const JobMetrics& metrics);

// Adds both attributes to `module`.
absl::Status RecordPreprocessing(torch::jit::Module& module, const JobMetrics& metrics);

}  // namespace qnet::engine

#endif  // QNET_WORKERS_ENGINE_EXPORT_PREPROCESSING_RECORD_H_
