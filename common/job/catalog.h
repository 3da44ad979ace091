// What the service offers, as Torch-free data that qnetd, the CLI and the engine share: the export
// formats a job can ask for and the zoo models it can name. The engine implements each entry
// (workers/engine/export/ writers, workers/engine/zoo/ builders, registered by the same names), and
// a test fails when an entry here has no implementation there or the other way round. Capabilities
// (GetCapabilities in the API) is built from this catalog, so clients hold no lists of their own.
//
//   for (const qnet::job::ExportFormatInfo& f : qnet::job::ExportFormats()) { ... f.name ... }
//   if (const qnet::v1::Model* m = qnet::job::FindZooModel("zoo:lenet5")) { ... }
#ifndef QNET_COMMON_JOB_CATALOG_H_
#define QNET_COMMON_JOB_CATALOG_H_

#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "common/job/job_limits.h"
#include "qnet/v1/job.pb.h"

namespace qnet::job {

// Export formats a job may list in JobSpec.export_formats, in the order artifacts are written.
const std::vector<v1::ExportFormat>& ExportFormats();
const v1::ExportFormat* FindExportFormat(absl::string_view name);
std::string ExportFormatNames();  // "torchscript, onnx, packed, metrics"

// Zoo models a job may name as JobSpec.model ("zoo:lenet5").
const std::vector<v1::Model>& ZooModels();
const v1::Model* FindZooModel(absl::string_view name);
std::string ZooModelNames();  // "zoo:lenet5, zoo:resnet20"

// Everything above plus the limits of job_spec.h; the caller adds its dataset formats.
// The epochs and batch size ranges are narrowed to `limits`, what this process accepts.
v1::Capabilities Capabilities(const std::vector<std::string>& dataset_formats,
                              const JobLimits& limits = kSchemaJobLimits);

}  // namespace qnet::job

#endif  // QNET_COMMON_JOB_CATALOG_H_
