#include "workers/engine/export/export_writer.h"

#include "common/digest.h"

namespace qnet::engine {

absl::Status ExportContext::AddArtifact(const std::string& kind, const std::string& file) {
  absl::StatusOr<std::string> digest = FileDigest((out_dir / file).string());
  if (!digest.ok()) return digest.status();
  digests[file] = *digest;
  result.artifacts.push_back({kind, (out_dir / file).string()});
  return absl::OkStatus();
}

}  // namespace qnet::engine
