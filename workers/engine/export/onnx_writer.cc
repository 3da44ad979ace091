// "onnx": the saved TorchScript artifact converted to ONNX with QuantizeLinear/DequantizeLinear
// pairs (model.onnx), carrying the input normalisation, preprocessing and class names as
// metadata properties; its input and output keep the names the job's model declares. The file is
// then scored in ONNX Runtime on the test split (the parity table's onnx_top1).
#include <nlohmann/json.hpp>

#include "workers/engine/export/export.h"
#include "workers/engine/export/export_writer.h"
#include "workers/engine/export/onnx/onnx_export.h"
#include "workers/engine/export/onnx_runtime.h"
#include "workers/engine/export/preprocessing_record.h"

namespace qnet::engine {
namespace {

absl::Status WriteOnnx(ExportContext& c) {
  // The exporter reads the artifact as saved, exactly what a user downloads.
  absl::Status s = ExportOnnx(
      torch::jit::load(c.saved_module.string()), {c.data.channels, c.data.height, c.data.width},
      (c.out_dir / "model.onnx").string(),
      {{kInputMeanAttr, nlohmann::json(c.data.channel_mean).dump()},
       {kInputStdAttr, nlohmann::json(c.data.channel_std).dump()},
       {kPreprocessingAttr, PreprocessingJson(c.result.metrics).dump()},
       {kClassNamesAttr, nlohmann::json(c.result.metrics.class_names).dump()}},
      c.io_names);
  if (!s.ok()) return s;
  if (OnnxRuntimeAvailable().ok()) {
    absl::StatusOr<double> top1 = OnnxRuntimeTop1((c.out_dir / "model.onnx").string(), c.data.test,
                                                  c.run.spec.training().batch_size());
    if (!top1.ok()) return top1.status();
    c.result.metrics.onnx_top1 = *top1;
  }
  return c.AddArtifact("onnx", "model.onnx");
}

}  // namespace

QNET_REGISTER(ExportWriter, "onnx", ExportWriter{&WriteOnnx});

}  // namespace qnet::engine
