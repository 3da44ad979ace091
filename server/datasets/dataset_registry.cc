#include "server/datasets/dataset_registry.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <system_error>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/atomic_file.h"
#include "datasets/dataset_format.h"
#include "google/protobuf/util/json_util.h"
#include "nlohmann/json.hpp"
#include "server/datasets/dataset_check.h"
#include "spdlog/spdlog.h"

namespace qnet::server {
namespace {

namespace fs = std::filesystem;

int64_t MtimeNanos(const struct stat& st) {
  return static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
}

// The digest recorded for this exact file version, or "".
std::string CachedDigest(const nlohmann::json& cache, const std::string& path, int64_t size,
                         int64_t mtime) {
  try {
    auto it = cache.find(path);
    if (it == cache.end() || !it->is_object()) return "";
    if (it->value("size", int64_t{-1}) != size || it->value("mtime_ns", int64_t{-1}) != mtime) {
      return "";
    }
    return it->value("digest", std::string());
  } catch (const nlohmann::json::exception&) {
    return "";  // a hand-edited cache with odd types: hash again
  }
}

// Formats of a few fixed files, which qnetd copies into its blob store so that workers need no
// volume. Every other format (image folders, archives, npz) is read in place from a volume the
// workers mount at the same path.
bool ImportedFormat(absl::string_view format) { return format == "idx" || format == "cifar10"; }

// The name a worker's dataset folder gives an uploaded blob; the formats detect by content, so
// the name only helps a person looking at the folder.
std::string UploadFileName(const std::string& format, const std::string& blob_path) {
  if (format == "npz") return "dataset.npz";
  char magic[4] = {};
  std::ifstream(blob_path, std::ios::binary).read(magic, sizeof(magic));
  if (magic[0] == 'P' && magic[1] == 'K') return "dataset.zip";
  if (magic[0] == '\x1f' && magic[1] == '\x8b') return "dataset.tar.gz";
  return "dataset.tar";
}

DatasetEntry UploadEntry(const qnet::v1::Dataset& info, const BlobStore& blobs) {
  DatasetEntry entry;
  entry.info = info;
  qnet::v1::DatasetFile* file = &entry.files.emplace_back();
  file->set_name(UploadFileName(info.format(), blobs.PathOf(info.digest())));
  file->set_digest(info.digest());
  file->set_size_bytes(info.size_bytes());
  return entry;
}

// The path goes to the log, for the operator; clients are told what failed, not where.
absl::Status ErrnoError(absl::string_view what, const std::string& path) {
  const int err = errno;
  spdlog::error("dataset records: {} {}: {}", std::string(what), path, std::strerror(err));
  return absl::UnavailableError(
      absl::StrCat("dataset records: ", what, " failed: ", std::strerror(err)));
}

// Replaces `path` with `data` so that after a crash it holds the old or the new content, and the
// new content once this returns OK (file and folder fsynced).
absl::Status WriteFileDurably(const std::string& path, const std::string& data) {
  const std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoError("create", tmp);
  for (size_t done = 0; done < data.size();) {
    const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      absl::Status s = ErrnoError("write", tmp);
      ::close(fd);
      return s;
    }
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0) {
    absl::Status s = ErrnoError("fsync", tmp);
    ::close(fd);
    return s;
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) return ErrnoError("rename to", path);
  const std::string dir = fs::path(path).parent_path().string();
  fd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return ErrnoError("open", dir);
  const bool synced = ::fsync(fd) == 0;
  ::close(fd);
  return synced ? absl::OkStatus() : ErrnoError("fsync", dir);
}

}  // namespace

DatasetRegistry::DatasetRegistry(Checker checker)
    : checker_(checker ? std::move(checker) : Checker(CheckDatasetFile)) {}

bool DatasetRegistry::IsValidName(absl::string_view name) {
  if (name.empty() || name.size() > 64 || absl::StrContains(name, "..")) return false;
  auto ok = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
  if (!ok(name.front())) return false;
  return std::all_of(name.begin(), name.end(),
                     [&](char c) { return ok(c) || c == '.' || c == '_' || c == '-'; });
}

absl::StatusOr<DatasetRegistry::Flag> DatasetRegistry::ParseFlag(absl::string_view flag) {
  const size_t eq = flag.find('=');
  const size_t colon = eq == absl::string_view::npos ? eq : flag.find(':', eq + 1);
  if (eq == absl::string_view::npos || colon == absl::string_view::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("--dataset \"", flag,
                     "\": expected NAME=FORMAT:PATH, e.g. cifar10=cifar10:/data/cifar10 or "
                     "pets=imagefolder:/data/pets"));
  }
  Flag f{std::string(flag.substr(0, eq)), std::string(flag.substr(eq + 1, colon - eq - 1)),
         std::string(flag.substr(colon + 1))};
  if (f.path.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("--dataset \"", flag, "\": PATH is empty"));
  }
  return f;
}

absl::Status DatasetRegistry::Add(const std::string& name, const std::string& format,
                                  const std::string& path) {
  if (!IsValidName(name)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "dataset name \"", name, "\" is not a plain name ([a-z0-9][a-z0-9._-]*, at most 64)"));
  }
  const datasets::DatasetFormat* dataset_format = datasets::FindDatasetFormat(format);
  if (dataset_format == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("dataset ", name, ": unknown format \"", format,
                                                   "\" (", datasets::DatasetFormatNameList(), ")"));
  }
  DatasetEntry entry;
  entry.in_place = !ImportedFormat(format);
  std::error_code ec;
  if (!entry.in_place && !fs::is_directory(path, ec)) {
    return absl::NotFoundError(absl::StrCat("dataset ", name, ": ", path, " is not a folder"));
  }
  absl::StatusOr<datasets::DatasetSummary> summary = dataset_format->Inspect(path);
  if (summary.ok()) {
    if (!entry.in_place) entry.needed = summary->files;
  } else if (entry.in_place && !fs::exists(path, ec)) {
    spdlog::warn(
        "dataset {}: {} is not visible to qnetd; registered with the usual {} shape, "
        "workers read it in place",
        name, path, format);
    summary = dataset_format->Typical();
  } else {
    // Kept, so that files can still arrive (or the volume be mounted) before the first job; the
    // shape clients see is then the format's usual one.
    spdlog::warn("dataset {}: {}; workers will fail on it", name,
                 std::string(summary.status().message()));
    summary = dataset_format->Typical();
  }
  entry.path = path;
  entry.info.set_name(name);
  entry.info.set_origin(kOriginOperator);
  SetDatasetSummary(format, *summary, &entry.info);
  if (entry.in_place) {
    spdlog::info("dataset {} ({}, {}x{}x{}): read in place from {}", name, format,
                 entry.info.channels(), entry.info.height(), entry.info.width(), path);
  }
  absl::MutexLock lock(&mu_);
  datasets_[name] = std::move(entry);
  return absl::OkStatus();
}

absl::Status DatasetRegistry::ImportFiles(const BlobStore& blobs,
                                          const std::string& digest_cache_path) {
  nlohmann::json cache = nlohmann::json::object();
  {
    std::ifstream in(digest_cache_path);
    if (in) {
      cache = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
      if (!cache.is_object()) {
        spdlog::warn("{} is not valid JSON; hashing datasets again", digest_cache_path);
        cache = nlohmann::json::object();
      }
    }
  }
  bool cache_changed = false;
  absl::MutexLock lock(&mu_);
  for (auto& [name, entry] : datasets_) {
    if (entry.in_place || entry.info.origin() != kOriginOperator) continue;
    entry.files.clear();
    const std::string& dir = entry.path;
    std::error_code ec;
    std::vector<fs::path> paths;
    // The files the format named, wherever in the folder they are (CIFAR-10's batches may sit in
    // cifar-10-batches-bin/); they reach workers under their base names, where the readers look
    // first.
    for (const std::string& needed : entry.needed) paths.push_back(fs::path(dir) / needed);
    if (entry.needed.empty()) {
      for (const auto& f : fs::directory_iterator(dir, ec)) {
        const std::string fname = f.path().filename().string();
        if (fname.empty() || fname.front() == '.' || !f.is_regular_file(ec)) continue;
        paths.push_back(f.path());
      }
    }
    if (ec) {
      return absl::UnavailableError(
          absl::StrCat("dataset ", name, ": cannot list ", dir, ": ", ec.message()));
    }
    std::sort(paths.begin(), paths.end());
    for (const fs::path& p : paths) {
      const std::string path = fs::absolute(p, ec).string();
      struct stat st;
      if (::stat(path.c_str(), &st) != 0) continue;
      const int64_t size = st.st_size;
      const int64_t mtime = MtimeNanos(st);
      std::string digest = CachedDigest(cache, path, size, mtime);
      if (!digest.empty() && blobs.Contains(digest)) {
        // Hashed before and still in the blob store.
      } else {
        absl::StatusOr<BlobInfo> info = blobs.ImportFile(path);
        if (!info.ok()) {
          return absl::Status(
              info.status().code(),
              absl::StrCat("dataset ", name, ": import ", path, ": ", info.status().message()));
        }
        digest = info->digest;
        cache[path] = {{"size", size}, {"mtime_ns", mtime}, {"digest", digest}};
        cache_changed = true;
        spdlog::info("dataset {}: imported {} ({} bytes) as {}", name, path, size, digest);
      }
      qnet::v1::DatasetFile* file = &entry.files.emplace_back();
      file->set_name(p.filename().string());
      file->set_digest(digest);
      file->set_size_bytes(size);
    }
    spdlog::info("dataset {} ({}, {}x{}x{}): {} files from {}", name, entry.info.format(),
                 entry.info.channels(), entry.info.height(), entry.info.width(), entry.files.size(),
                 dir);
  }
  if (cache_changed) {
    if (absl::Status s = WriteFileAtomically(digest_cache_path, cache.dump(2) + "\n"); !s.ok()) {
      spdlog::warn("{}; datasets will be hashed again next start", s.ToString());
    }
  }
  return absl::OkStatus();
}

absl::Status DatasetRegistry::LoadUploaded(const BlobStore& blobs,
                                           const std::string& records_path) {
  records_path_ = records_path;
  std::ifstream in(records_path, std::ios::binary);
  if (!in) return absl::OkStatus();  // nothing uploaded yet
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  qnet::v1::ListDatasetsResponse records;
  if (auto s = google::protobuf::util::JsonStringToMessage(text, &records); !s.ok()) {
    // Refuse to start rather than drop every upload by writing over the file later.
    return absl::DataLossError(absl::StrCat(records_path, " is not a dataset record file (",
                                            std::string(s.message()), "); repair or remove it"));
  }
  absl::MutexLock lock(&mu_);
  for (const qnet::v1::Dataset& info : records.datasets()) {
    if (datasets_.contains(info.name())) {
      spdlog::warn("uploaded dataset {} is shadowed by the operator's --dataset {}; dropped",
                   info.name(), info.name());
      continue;
    }
    if (!IsValidDigest(info.digest()) || !blobs.Contains(info.digest())) {
      spdlog::warn("uploaded dataset {}: blob {} is gone; dropped (upload it again)", info.name(),
                   info.digest());
      continue;
    }
    datasets_[info.name()] = UploadEntry(info, blobs);
  }
  return absl::OkStatus();
}

absl::StatusOr<const DatasetEntry*> DatasetRegistry::ExistingUpload(
    const std::string& name, const std::string& digest, bool replace,
    const std::string& owner) const {
  auto it = datasets_.find(name);
  if (it == datasets_.end()) return nullptr;
  const qnet::v1::Dataset& info = it->second.info;
  if (info.origin() != kOriginUploaded) {
    return absl::AlreadyExistsError(absl::StrCat("dataset ", name,
                                                 " is configured by the operator (qnetd "
                                                 "--dataset) and cannot be replaced; choose "
                                                 "another name"));
  }
  if (info.owner() != owner) {
    return absl::AlreadyExistsError(absl::StrCat(
        "dataset name ", name, " is taken by another identity's upload; choose another name"));
  }
  if (info.digest() == digest) return &it->second;
  if (replace) return nullptr;
  return absl::AlreadyExistsError(
      absl::StrCat("dataset ", name, " already holds other content (", info.digest(),
                   "); choose another name, or replace it (qnet datasets upload --replace)"));
}

absl::Status DatasetRegistry::SaveUploaded(const qnet::v1::Dataset& added) const {
  if (records_path_.empty()) {
    return absl::FailedPreconditionError("uploaded datasets have no record file (LoadUploaded)");
  }
  qnet::v1::ListDatasetsResponse records;
  for (const auto& [name, entry] : datasets_) {
    if (entry.info.origin() == kOriginUploaded && name != added.name()) {
      *records.add_datasets() = entry.info;
    }
  }
  *records.add_datasets() = added;
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = true;
  options.preserve_proto_field_names = true;
  std::string json;
  if (auto s = google::protobuf::util::MessageToJsonString(records, &json, options); !s.ok()) {
    return absl::InternalError(absl::StrCat("dataset records: ", std::string(s.message())));
  }
  return WriteFileDurably(records_path_, json);
}

absl::StatusOr<qnet::v1::Dataset> DatasetRegistry::CreateUploaded(const std::string& name,
                                                                  const std::string& digest,
                                                                  bool replace,
                                                                  const BlobStore& blobs,
                                                                  const std::string& owner) {
  if (!IsValidName(name)) {
    return absl::InvalidArgumentError(
        absl::StrCat("dataset name \"", name.substr(0, 80),
                     "\" is not a plain name: [a-z0-9][a-z0-9._-]*, at most 64 characters"));
  }
  if (absl::Status s = CheckDigest(digest, "digest"); !s.ok()) return s;
  absl::StatusOr<int64_t> size = blobs.Stat(digest);
  if (!size.ok()) return size.status();

  std::optional<qnet::v1::Dataset> checked;
  {
    absl::MutexLock lock(&mu_);
    absl::StatusOr<const DatasetEntry*> existing = ExistingUpload(name, digest, replace, owner);
    if (!existing.ok()) return existing.status();
    if (*existing != nullptr) return (*existing)->info;
    for (const auto& [other, entry] : datasets_) {  // the same content under another name
      if (entry.info.digest() == digest) checked = entry.info;
    }
  }
  if (!checked.has_value()) {
    // One check at a time: each decodes on every core and holds an archive in memory.
    absl::MutexLock check_lock(&check_mu_);
    absl::StatusOr<qnet::v1::Dataset> info = checker_(blobs.PathOf(digest));
    if (!info.ok()) return info.status();
    checked = *std::move(info);
  }
  qnet::v1::Dataset info = *std::move(checked);
  info.set_name(name);
  info.set_origin(kOriginUploaded);
  info.set_digest(digest);
  info.set_size_bytes(*size);
  info.set_owner(owner);
  const absl::Time now = absl::Now();
  info.mutable_create_time()->set_seconds(absl::ToUnixSeconds(now));
  info.mutable_create_time()->set_nanos(0);

  absl::MutexLock lock(&mu_);
  // Another call may have taken the name while this one was checking.
  absl::StatusOr<const DatasetEntry*> existing = ExistingUpload(name, digest, replace, owner);
  if (!existing.ok()) return existing.status();
  if (*existing != nullptr) return (*existing)->info;
  if (absl::Status s = SaveUploaded(info); !s.ok()) {
    return absl::UnavailableError(absl::StrCat("dataset ", name, " not registered: ", s.message()));
  }
  datasets_[name] = UploadEntry(info, blobs);
  spdlog::info("dataset {} uploaded: {} ({}, {} train / {} test images, {} classes)", name, digest,
               info.format(), info.train_images(), info.test_images(), info.num_classes());
  return info;
}

std::optional<DatasetEntry> DatasetRegistry::Find(absl::string_view name) const {
  absl::MutexLock lock(&mu_);
  auto it = datasets_.find(name);
  if (it == datasets_.end()) return std::nullopt;
  return it->second;
}

bool DatasetRegistry::VisibleTo(const qnet::v1::Dataset& dataset, absl::string_view viewer) {
  return dataset.origin() == kOriginOperator || (!viewer.empty() && dataset.owner() == viewer);
}

std::vector<qnet::v1::Dataset> DatasetRegistry::List(
    std::optional<absl::string_view> viewer) const {
  absl::MutexLock lock(&mu_);
  std::vector<qnet::v1::Dataset> out;
  for (const auto& [name, entry] : datasets_) {
    if (!viewer.has_value() || VisibleTo(entry.info, *viewer)) out.push_back(entry.info);
  }
  return out;
}

std::string DatasetRegistry::Names(std::optional<absl::string_view> viewer) const {
  return absl::StrJoin(List(viewer), ", ",
                       [](std::string* out, const qnet::v1::Dataset& d) { out->append(d.name()); });
}

std::vector<std::string> DatasetRegistry::Digests() const {
  absl::MutexLock lock(&mu_);
  std::vector<std::string> out;
  for (const auto& [name, entry] : datasets_) {
    if (!entry.info.digest().empty()) out.push_back(entry.info.digest());
    for (const qnet::v1::DatasetFile& f : entry.files) out.push_back(f.digest());
  }
  return out;
}

bool DatasetRegistry::empty() const {
  absl::MutexLock lock(&mu_);
  return datasets_.empty();
}

}  // namespace qnet::server
