// ExportWriter: one export format's implementation, registered under the name the job catalog
// (common/job/catalog.h) gives it. RunJob builds the hard-quantized module once, then calls the
// writer of every format the job asks for, in catalog order; a format is one writer file with one
// QNET_REGISTER line. A writer that cannot produce its artifact returns an error that fails the
// job: a requested artifact is never silently left out.
//
//   absl::Status WritePacked(ExportContext& c) { ...; return c.AddArtifact("packed", "model.qnet");
//   } QNET_REGISTER(ExportWriter, "packed", ExportWriter{&WritePacked});
#ifndef QNET_WORKERS_ENGINE_EXPORT_EXPORT_WRITER_H_
#define QNET_WORKERS_ENGINE_EXPORT_EXPORT_WRITER_H_

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>

#include <torch/script.h>

#include "absl/status/status.h"
#include "common/registry.h"
#include "workers/engine/data/data.h"
#include "workers/engine/export/io_names.h"
#include "workers/engine/job_run.h"
#include "workers/engine/transform/transform.h"

namespace qnet::engine {

// What a writer reads and where it records what it wrote.
struct ExportContext {
  const JobRun& run;  // spec with defaults resolved
  const DatasetSplits& data;
  // The hard inference module (CPU, input normalisation recorded), and the same module as saved
  // at `saved_module`: what a user downloads, for writers that convert the artifact itself.
  torch::jit::Module& hard;
  std::filesystem::path saved_module;
  QuantizedModel& quantized;
  std::filesystem::path out_dir;
  IoNames io_names;   // what the model declares (OpenedModel::DeclaredIoNames)
  JobResult& result;  // writers add artifacts and the metrics they measure (packed size)
  std::map<std::string, std::string> digests;  // file name -> sha256 of artifacts written so far

  // Records out_dir/file as an artifact of `kind`, with its digest.
  absl::Status AddArtifact(const std::string& kind, const std::string& file);
};

struct ExportWriter {
  absl::Status (*write)(ExportContext& context);
};

// The registered writer of `format`, or nullptr.
inline const ExportWriter* FindExportWriter(absl::string_view format) {
  return Registry<ExportWriter>::Global().Find(format);
}

}  // namespace qnet::engine

#endif  // QNET_WORKERS_ENGINE_EXPORT_EXPORT_WRITER_H_
