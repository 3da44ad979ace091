#include "server/datasets/dataset_registry.h"

#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <system_error>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "common/atomic_file.h"
#include "datasets/dataset_format.h"
#include "nlohmann/json.hpp"
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

}  // namespace

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
    return absl::InvalidArgumentError(absl::StrCat(
        "--dataset \"", flag, "\": expected NAME=FORMAT:DIR, e.g. cifar10=cifar10:/data/cifar10"));
  }
  Flag f{std::string(flag.substr(0, eq)), std::string(flag.substr(eq + 1, colon - eq - 1)),
         std::string(flag.substr(colon + 1))};
  if (f.dir.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("--dataset \"", flag, "\": DIR is empty"));
  }
  return f;
}

absl::Status DatasetRegistry::Add(const std::string& name, const std::string& format,
                                  const std::string& dir) {
  if (!IsValidName(name)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "dataset name \"", name, "\" is not a plain name ([a-z0-9][a-z0-9._-]*, at most 64)"));
  }
  const datasets::DatasetFormat* dataset_format = datasets::FindDatasetFormat(format);
  if (dataset_format == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("dataset ", name, ": unknown format \"", format,
                                                   "\" (", datasets::DatasetFormatNameList(), ")"));
  }
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    return absl::NotFoundError(absl::StrCat("dataset ", name, ": ", dir, " is not a folder"));
  }
  DatasetEntry entry;
  absl::StatusOr<datasets::DatasetSummary> summary = dataset_format->Inspect(dir);
  if (summary.ok()) {
    entry.needed = summary->files;
  } else {
    // Kept, so that files can still arrive before the first job; the shape clients see is then
    // the format's usual one.
    spdlog::warn("dataset {}: {}; workers will fail on it", name,
                 std::string(summary.status().message()));
    summary = dataset_format->Typical();
  }
  entry.dir = dir;
  entry.info.set_name(name);
  entry.info.set_format(format);
  entry.info.set_channels(static_cast<int32_t>(summary->shape.channels));
  entry.info.set_height(static_cast<int32_t>(summary->shape.height));
  entry.info.set_width(static_cast<int32_t>(summary->shape.width));
  entry.info.set_num_classes(static_cast<int32_t>(summary->num_classes));
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
  for (auto& [name, entry] : datasets_) {
    entry.files.clear();
    std::error_code ec;
    std::vector<fs::path> paths;
    // The files the format named, wherever in the folder they are (CIFAR-10's batches may sit in
    // cifar-10-batches-bin/); they reach workers under their base names, where the readers look
    // first.
    for (const std::string& needed : entry.needed) paths.push_back(fs::path(entry.dir) / needed);
    if (entry.needed.empty()) {
      for (const auto& f : fs::directory_iterator(entry.dir, ec)) {
        const std::string fname = f.path().filename().string();
        if (fname.empty() || fname.front() == '.' || !f.is_regular_file(ec)) continue;
        paths.push_back(f.path());
      }
    }
    if (ec) {
      return absl::UnavailableError(
          absl::StrCat("dataset ", name, ": cannot list ", entry.dir, ": ", ec.message()));
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
                 entry.dir);
  }
  if (cache_changed) {
    if (absl::Status s = WriteFileAtomically(digest_cache_path, cache.dump(2) + "\n"); !s.ok()) {
      spdlog::warn("{}; datasets will be hashed again next start", s.ToString());
    }
  }
  return absl::OkStatus();
}

const DatasetEntry* DatasetRegistry::Find(absl::string_view name) const {
  auto it = datasets_.find(name);
  return it == datasets_.end() ? nullptr : &it->second;
}

std::vector<qnet::v1::Dataset> DatasetRegistry::List() const {
  std::vector<qnet::v1::Dataset> out;
  for (const auto& [name, entry] : datasets_) out.push_back(entry.info);
  return out;
}

std::string DatasetRegistry::Names() const {
  return absl::StrJoin(datasets_, ", ",
                       [](std::string* out, const auto& kv) { out->append(kv.first); });
}

}  // namespace qnet::server
