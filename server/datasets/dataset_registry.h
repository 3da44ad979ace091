// DatasetRegistry: the datasets this server offers, by name. Clients only ever pass a name; the
// operator maps names to local folders (`--dataset NAME=FORMAT:DIR`; `fashion-mnist` is added from
// Debian's dataset-fashion-mnist package when present). At startup ImportFiles copies each
// dataset file into the blob store so remote workers can download it by digest; digests are
// cached by path, size and mtime in a JSON file so a restart does not hash them again.
// Filled once at startup, read-only afterwards (safe to share between threads then).
//
//   DatasetRegistry registry;
//   auto flag = DatasetRegistry::ParseFlag("cifar10=cifar10:/data/cifar-10-batches-bin");
//   if (flag.ok()) status = registry.Add(flag->name, flag->format, flag->dir);
//   status = registry.ImportFiles(blobs, data_dir + "/dataset-digests.json");
//   if (const DatasetEntry* d = registry.Find("fashion-mnist")) { ... d->files ... }
#ifndef QNET_SERVER_DATASETS_DATASET_REGISTRY_H_
#define QNET_SERVER_DATASETS_DATASET_REGISTRY_H_

#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "qnet/v1/job.pb.h"
#include "qnet/v1/worker.pb.h"
#include "server/blobs/blob_store.h"

namespace qnet::server {

struct DatasetEntry {
  qnet::v1::Dataset info;  // name, format, shape, classes
  std::string dir;         // local folder (never shown to clients)
  // The files the format reads, relative to `dir` (DatasetFormat::Inspect); empty when the
  // folder could not be inspected, and then every regular file in it is imported.
  std::vector<std::string> needed;
  std::vector<qnet::v1::DatasetFile> files;  // filled by ImportFiles
};

class DatasetRegistry {
 public:
  struct Flag {
    std::string name;
    std::string format;
    std::string dir;
  };
  // Parses "NAME=FORMAT:DIR".
  static absl::StatusOr<Flag> ParseFlag(absl::string_view flag);
  // Plain registry names: [a-z0-9][a-z0-9._-]*, at most 64 characters, no "..".
  static bool IsValidName(absl::string_view name);

  // Registers (or replaces) a dataset in any registered format (datasets/dataset_format.h).
  // Shape and classes come from the folder's headers; a folder the format cannot read yet is
  // still registered, with a warning and the format's usual shape. INVALID_ARGUMENT for an
  // unknown format (the message lists the known ones), NOT_FOUND when `dir` is not a folder.
  absl::Status Add(const std::string& name, const std::string& format, const std::string& dir);
  // Imports every regular file of every dataset folder into `blobs`.
  absl::Status ImportFiles(const BlobStore& blobs, const std::string& digest_cache_path);

  const DatasetEntry* Find(absl::string_view name) const;
  std::vector<qnet::v1::Dataset> List() const;
  std::string Names() const;  // "cifar10, fashion-mnist"
  bool empty() const { return datasets_.empty(); }

 private:
  std::map<std::string, DatasetEntry, std::less<>> datasets_;
};

}  // namespace qnet::server

#endif  // QNET_SERVER_DATASETS_DATASET_REGISTRY_H_
