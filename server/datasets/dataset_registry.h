// DatasetRegistry: the datasets this server offers, by name. Clients only ever pass a name. Two
// origins:
//  - operator: `--dataset NAME=FORMAT:PATH` (`fashion-mnist` is added from Debian's
//    dataset-fashion-mnist package when present). Formats of a few fixed files (idx, cifar10) are
//    copied into the blob store at startup (ImportFiles) so remote workers download them; digests
//    are cached by path, size and mtime in a JSON file so a restart does not hash them again.
//    Every other format (image folders, archives, npz) stays on a volume the workers mount at the
//    same path and is read in place (`in_place`).
//  - uploaded: CreateUploaded registers an uploaded blob after reading it in full
//    (dataset_check.h). The records are written durably to a file in the data folder before the
//    call returns and loaded again at the next start (LoadUploaded). Each belongs to the
//    identity that registered it: only it (and admins) list and use it (VisibleTo); names are
//    unique server-wide, so another identity's name is taken. Records from before owners
//    existed have none and are visible to admins only.
// Add, ImportFiles and LoadUploaded run once at startup; CreateUploaded, Find and List are
// thread-safe and may run concurrently afterwards.
//
//   DatasetRegistry registry;
//   auto flag = DatasetRegistry::ParseFlag("cifar10=cifar10:/data/cifar-10-batches-bin");
//   if (flag.ok()) status = registry.Add(flag->name, flag->format, flag->path);
//   status = registry.ImportFiles(blobs, data_dir + "/dataset-digests.json");
//   status = registry.LoadUploaded(blobs, data_dir + "/datasets.json");
//   auto info = registry.CreateUploaded("pets", "sha256:...", /*replace=*/false, blobs);
//   if (std::optional<DatasetEntry> d = registry.Find("pets")) { ... d->files ... }
#ifndef QNET_SERVER_DATASETS_DATASET_REGISTRY_H_
#define QNET_SERVER_DATASETS_DATASET_REGISTRY_H_

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "qnet/v1/job.pb.h"
#include "qnet/v1/worker.pb.h"
#include "server/blobs/blob_store.h"

namespace qnet::server {

inline constexpr char kOriginOperator[] = "operator";
inline constexpr char kOriginUploaded[] = "uploaded";

struct DatasetEntry {
  qnet::v1::Dataset info;  // what clients see
  std::string path;        // operator: the folder or file on this machine (never shown to clients)
  // Workers read `path` in place from a volume they mount; nothing is shipped as blobs.
  bool in_place = false;
  // The files the format reads, relative to `path` (DatasetFormat::Inspect); empty when the
  // folder could not be inspected, and then every regular file in it is imported.
  std::vector<std::string> needed;
  std::vector<qnet::v1::DatasetFile> files;  // shipped to workers as blobs
};

class DatasetRegistry {
 public:
  struct Flag {
    std::string name;
    std::string format;
    std::string path;
  };
  // Reads an uploaded dataset file in full and describes it (format, shape, classes, counts).
  using Checker = std::function<absl::StatusOr<qnet::v1::Dataset>(const std::string& path)>;

  // `checker`: CheckDatasetFile (dataset_check.h) unless a test puts a fake here.
  explicit DatasetRegistry(Checker checker = {});

  // Parses "NAME=FORMAT:PATH".
  static absl::StatusOr<Flag> ParseFlag(absl::string_view flag);
  // Plain registry names: [a-z0-9][a-z0-9._-]*, at most 64 characters, no "..".
  static bool IsValidName(absl::string_view name);

  // Registers (or replaces) an operator dataset in any registered format
  // (datasets/dataset_format.h). Shape and classes come from the files' headers; files the
  // format cannot read yet (or, for in-place formats, a path this machine cannot see) still
  // register, with a warning and the format's usual shape. INVALID_ARGUMENT for a bad name or an
  // unknown format (the message lists the known ones), NOT_FOUND when the folder of a format
  // qnetd imports is missing.
  absl::Status Add(const std::string& name, const std::string& format, const std::string& path);
  // Imports the files of every operator dataset that is not read in place into `blobs`.
  absl::Status ImportFiles(const BlobStore& blobs, const std::string& digest_cache_path);
  // Registers the uploads recorded in `records_path` (none when it does not exist) and records
  // later ones there. A record whose blob is gone, or whose name an operator dataset now takes,
  // is dropped with a warning.
  absl::Status LoadUploaded(const BlobStore& blobs, const std::string& records_path);

  // Registers blob `digest` as dataset `name` once it passes the check, durably, and returns the
  // record. The same content under the same name returns the existing record. ALREADY_EXISTS
  // when `name` is an operator dataset, or an upload with other content and `replace` is false;
  // NOT_FOUND when the blob is not uploaded; INVALID_ARGUMENT for a bad name or a dataset the
  // check refuses; UNAVAILABLE when the record cannot be written (nothing is registered then).
  // `owner`: the identity registering it; ALREADY_EXISTS too when another identity's upload
  // holds `name`.
  absl::StatusOr<qnet::v1::Dataset> CreateUploaded(const std::string& name,
                                                   const std::string& digest, bool replace,
                                                   const BlobStore& blobs,
                                                   const std::string& owner);

  // Whether identity `viewer` may list and use `dataset` (operator datasets: everyone).
  static bool VisibleTo(const qnet::v1::Dataset& dataset, absl::string_view viewer);
  std::optional<DatasetEntry> Find(absl::string_view name) const;
  // Every dataset; with a viewer, those visible to it.
  std::vector<qnet::v1::Dataset> List(std::optional<absl::string_view> viewer = {}) const;
  std::string Names(std::optional<absl::string_view> viewer = {}) const;  // "cifar10, pets"
  bool empty() const;
  // The blobs of every dataset (the blob collector keeps them).
  std::vector<std::string> Digests() const;

 private:
  // The upload of `name` that already holds `digest`, nullptr when `name` is free (or may be
  // replaced), or why it may not be registered.
  absl::StatusOr<const DatasetEntry*> ExistingUpload(const std::string& name,
                                                     const std::string& digest, bool replace,
                                                     const std::string& owner) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Writes every uploaded record plus `added` (replacing a record of its name) to records_path_.
  absl::Status SaveUploaded(const qnet::v1::Dataset& added) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const Checker checker_;
  std::string records_path_;  // set once by LoadUploaded
  absl::Mutex check_mu_;      // held while checker_ runs
  mutable absl::Mutex mu_;
  std::map<std::string, DatasetEntry, std::less<>> datasets_ ABSL_GUARDED_BY(mu_);
};

}  // namespace qnet::server

#endif  // QNET_SERVER_DATASETS_DATASET_REGISTRY_H_
