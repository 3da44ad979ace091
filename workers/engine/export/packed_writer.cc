// "packed": k-bit weight codes (model.qnet) and their manifest (manifest.json), which lists the
// digests of the artifacts written before it.
#include <algorithm>

#include "workers/engine/export/export.h"
#include "workers/engine/export/export_writer.h"
#include "workers/engine/export/metrics_json.h"
#include "workers/engine/export/preprocessing_record.h"

namespace qnet::engine {
namespace {

absl::Status WritePacked(ExportContext& c) {
  absl::StatusOr<PackedModel> packed =
      WritePackedModel(c.hard, c.quantized, (c.out_dir / "model.qnet").string());
  if (!packed.ok()) return packed.status();
  JobMetrics& m = c.result.metrics;
  m.packed_size_bytes = packed->file_bytes;
  m.compression_ratio = static_cast<double>(m.float_size_bytes) /
                        static_cast<double>(std::max<int64_t>(1, packed->file_bytes));
  if (absl::Status s = c.AddArtifact("packed", "model.qnet"); !s.ok()) return s;
  nlohmann::json manifest = ManifestJson(*packed, c.digests, m.float_size_bytes);
  manifest["input_normalization"] = InputNormalizationJson(m);
  manifest["preprocessing"] = PreprocessingJson(m);
  manifest["class_names"] = m.class_names;
  if (absl::Status s = WriteJsonFile((c.out_dir / "manifest.json").string(), manifest); !s.ok()) {
    return s;
  }
  return c.AddArtifact("manifest", "manifest.json");
}

}  // namespace

QNET_REGISTER(ExportWriter, "packed", ExportWriter{&WritePacked});

}  // namespace qnet::engine
