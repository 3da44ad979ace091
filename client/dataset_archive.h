// Packs a dataset folder into one .tar for upload, deterministically: the same files give the same
// bytes, hence the same digest, whoever packs them and whenever, so a repeated upload is found on
// the server and an interrupted one resumes. Entries are the regular files under the folder
// (symbolic links to files are followed), sorted by path, as ustar records with mode 0644, owner
// 0:0, no user or group names and mtime 0; names starting with "." (.DS_Store, .git) are left
// out. The Python client writes the same bytes (client/python/qnet_client/dataset_tar.py).
//
//   absl::StatusOr<int64_t> files = qnet::client::WriteDatasetTar("photos/", "/tmp/photos.tar");
#ifndef QNET_CLIENT_DATASET_ARCHIVE_H_
#define QNET_CLIENT_DATASET_ARCHIVE_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace qnet::client {

// Writes the tar of folder `dir` to `out` and returns how many files it holds. INVALID_ARGUMENT
// naming the entry for what a tar cannot carry (a symbolic link to a folder, a device, a path
// over 255 bytes) or an empty folder; NOT_FOUND when `dir` is not a folder.
absl::StatusOr<int64_t> WriteDatasetTar(const std::string& dir, const std::string& out);

}  // namespace qnet::client

#endif  // QNET_CLIENT_DATASET_ARCHIVE_H_
