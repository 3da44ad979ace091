// What qnetd learns of a dataset before it offers it: the format (detected from the content for an
// upload, whose blob file has no name to go by), the typical image shape, classes and counts. An
// upload is read in full once (every image decoded), so a corrupt file, a path escaping the
// archive or a label out of range is refused at upload with the entry named, not in a job later.
//
//   absl::StatusOr<qnet::v1::Dataset> info = CheckDatasetFile(blobs.PathOf(digest));
//   if (!info.ok()) return info.status();  // INVALID_ARGUMENT: "train/cat/3.png: ..."
#ifndef QNET_SERVER_DATASETS_DATASET_CHECK_H_
#define QNET_SERVER_DATASETS_DATASET_CHECK_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "datasets/dataset_format.h"
#include "qnet/v1/job.pb.h"

namespace qnet::server {

// Sets format, shape, classes and counts of `info` from a format's summary.
void SetDatasetSummary(absl::string_view format, const datasets::DatasetSummary& summary,
                       qnet::v1::Dataset* info);

// Detects the format of `path` (a file) by content, inspects it and decodes every image.
// INVALID_ARGUMENT when no format accepts it or when anything in it is malformed; messages speak
// of "the upload", never of the server's blob path.
absl::StatusOr<qnet::v1::Dataset> CheckDatasetFile(const std::string& path);

}  // namespace qnet::server

#endif  // QNET_SERVER_DATASETS_DATASET_CHECK_H_
