// Human-readable reports of jobs and server listings for the `qnet` CLI (the --json forms are in
// job_json.h): the accuracy/size table of a finished job, its artifact list, a job summary, and
// the tables of `qnet list`, `qnet datasets` and `qnet models`.
//
//   std::cout << qnet::cli::FormatMetricsTable(job.metrics())
//             << qnet::cli::FormatArtifacts(job.artifacts());
#ifndef QNET_CLIENT_CLI_JOB_REPORT_H_
#define QNET_CLIENT_CLI_JOB_REPORT_H_

#include <cstdint>
#include <string>
#include <vector>

#include "google/protobuf/repeated_ptr_field.h"
#include "qnet/v1/job.pb.h"

namespace qnet::cli {

// "512 B", "1.5 KiB", "12.3 MiB".
std::string FormatBytes(int64_t bytes);
// "87.12%"; "-" for a value not measured (zero).
std::string FormatPercent(double fraction);

// Float vs quantized: top-1, top-5, soft/hard top-1 before BN re-estimation, size and ratio.
std::string FormatMetricsTable(const v1::Metrics& metrics);
// One line per artifact: kind, file name, size, digest.
std::string FormatArtifacts(const google::protobuf::RepeatedPtrField<v1::Artifact>& artifacts);
// Several lines: id, state, attempt, spec, progress, error, metrics and artifacts when present.
std::string FormatJobSummary(const v1::Job& job);
// A table: id, state, model, dataset, bits, attempt, progress or quantized top-1.
std::string FormatJobTable(const std::vector<v1::Job>& jobs);
std::string FormatDatasetTable(const std::vector<v1::Dataset>& datasets);
std::string FormatModelTable(const std::vector<v1::Model>& models);

}  // namespace qnet::cli

#endif  // QNET_CLIENT_CLI_JOB_REPORT_H_
