// The worker's content-addressed cache of server blobs (models, dataset files, checkpoints), so a
// worker fetches each blob once however many jobs use it. Layout under the cache directory:
//   blobs/<hex>                    one verified blob (appears only once complete and verified)
//   locks/<hex>                    flock()ed while a process downloads that blob
//   datasets/<key>/<name>/<file>   a dataset directory assembled from blobs by hard links
//                                  (copies across file systems); <key> hashes the file list
// Several worker processes may share one cache directory.
//
//   qnet::worker::BlobCache cache("/var/cache/qnet", [&](const std::string& d, const std::string&
//   p) {
//     return client.DownloadBlob(d, p).status();
//   });
//   absl::StatusOr<std::string> model = cache.Blob("sha256:...");
//   absl::StatusOr<std::string> dir = cache.Dataset("fashion-mnist", lease.dataset_files());
#ifndef QNET_WORKERS_WORKER_BLOB_CACHE_H_
#define QNET_WORKERS_WORKER_BLOB_CACHE_H_

#include <functional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "google/protobuf/repeated_ptr_field.h"
#include "qnet/v1/worker.pb.h"

namespace qnet::worker {

class BlobCache {
 public:
  // Downloads blob `digest` to `path`, verifying its digest (QnetClient::DownloadBlob does).
  using Fetcher = std::function<absl::Status(const std::string& digest, const std::string& path)>;

  BlobCache(std::string root, Fetcher fetch);

  const std::string& root() const { return root_; }

  // Path of the cached blob, fetched first when missing.
  absl::StatusOr<std::string> Blob(const std::string& digest);

  // A directory holding `files` under their names, fetched as needed. `name` (the dataset's name)
  // is the directory's base name; INVALID_ARGUMENT for unsafe names or digests.
  absl::StatusOr<std::string> Dataset(
      const std::string& name, const google::protobuf::RepeatedPtrField<v1::DatasetFile>& files);

 private:
  std::string root_;
  Fetcher fetch_;
};

// True for a plain file name: [A-Za-z0-9._-], not starting with '.', at most 200 characters.
bool IsSafeFileName(const std::string& name);

}  // namespace qnet::worker

#endif  // QNET_WORKERS_WORKER_BLOB_CACHE_H_
