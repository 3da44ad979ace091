// "metrics": accuracy, sizes and the effective settings as metrics.json. Last in catalog order,
// so it sees the sizes the other writers measured.
#include "workers/engine/export/export_writer.h"
#include "workers/engine/export/metrics_json.h"

namespace qnet::engine {
namespace {

absl::Status WriteMetrics(ExportContext& c) {
  if (absl::Status s = WriteJsonFile((c.out_dir / "metrics.json").string(),
                                     MetricsJson(c.result.metrics, c.run));
      !s.ok()) {
    return s;
  }
  return c.AddArtifact("metrics", "metrics.json");
}

}  // namespace

QNET_REGISTER(ExportWriter, "metrics", ExportWriter{&WriteMetrics});

}  // namespace qnet::engine
