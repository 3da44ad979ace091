// Which artifacts of a job `qnet download --format F` fetches, and the file name each gets in the
// output directory. File names come from the server, so they are reduced to a safe base name:
// no directories, no "..", only [A-Za-z0-9._-].
//
//   for (const qnet::v1::Artifact& a : qnet::cli::SelectArtifacts(job, "packed", caps))  // +
//   manifest
//     client.DownloadBlob(a.digest(), dir + "/" + qnet::cli::ArtifactFileName(a));
#ifndef QNET_CLIENT_CLI_ARTIFACT_SELECT_H_
#define QNET_CLIENT_CLI_ARTIFACT_SELECT_H_

#include <string>
#include <string_view>
#include <vector>

#include "qnet/v1/job.pb.h"

namespace qnet::cli {

// Artifacts of `format`: an export format the server advertises brings every artifact kind it
// produces ("packed" brings its manifest); any other value selects artifacts of that kind. All
// artifacts when `format` is empty.
std::vector<v1::Artifact> SelectArtifacts(const v1::Job& job, std::string_view format,
                                          const v1::Capabilities& capabilities);

// A safe base name for the artifact, falling back to "<kind>-<digest prefix>".
std::string ArtifactFileName(const v1::Artifact& artifact);

// File names for `artifacts`, made unique by a "-2", "-3" suffix before the extension.
std::vector<std::string> UniqueFileNames(const std::vector<v1::Artifact>& artifacts);

}  // namespace qnet::cli

#endif  // QNET_CLIENT_CLI_ARTIFACT_SELECT_H_
