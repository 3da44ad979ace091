#include "client/dataset_archive.h"

#include <archive.h>
#include <archive_entry.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <memory>
#include <system_error>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace qnet::client {
namespace {

namespace fs = std::filesystem;

struct ArchiveFree {
  void operator()(archive* a) const { archive_write_free(a); }
};
struct EntryFree {
  void operator()(archive_entry* e) const { archive_entry_free(e); }
};

struct FileToPack {
  std::string name;  // relative to the folder, '/'-separated
  fs::path path;
  int64_t size = 0;
};

// The regular files under `dir`, sorted by name; hidden names skipped.
absl::StatusOr<std::vector<FileToPack>> ListFiles(const fs::path& dir) {
  std::vector<FileToPack> files;
  std::error_code ec;
  fs::recursive_directory_iterator it(dir, ec);
  if (ec) {
    return absl::NotFoundError(
        absl::StrCat("cannot read folder ", dir.string(), ": ", ec.message()));
  }
  for (; it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (ec) break;
    const fs::path& path = it->path();
    const std::string name = path.lexically_relative(dir).generic_string();
    if (path.filename().string().starts_with(".")) {
      if (it->is_directory(ec)) it.disable_recursion_pending();
      continue;
    }
    if (it->is_symlink(ec) && it->is_directory(ec)) {
      return absl::InvalidArgumentError(absl::StrCat(
          name, " is a symbolic link to a folder; copy the folder in, or upload an archive"));
    }
    if (it->is_directory(ec)) continue;
    if (!it->is_regular_file(ec)) {
      return absl::InvalidArgumentError(
          absl::StrCat(name, " is not a regular file (a device, socket or broken link)"));
    }
    files.push_back({name, path, static_cast<int64_t>(it->file_size(ec))});
  }
  if (ec) {
    return absl::PermissionDeniedError(
        absl::StrCat("cannot list ", dir.string(), ": ", ec.message()));
  }
  if (files.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        dir.string(), " holds no files; a dataset folder has train/<class>/<image> files"));
  }
  std::sort(files.begin(), files.end(),
            [](const FileToPack& a, const FileToPack& b) { return a.name < b.name; });
  return files;
}

}  // namespace

absl::StatusOr<int64_t> WriteDatasetTar(const std::string& dir, const std::string& out) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return absl::NotFoundError(absl::StrCat(dir, " is not a folder"));
  absl::StatusOr<std::vector<FileToPack>> files = ListFiles(dir);
  if (!files.ok()) return files.status();

  std::unique_ptr<archive, ArchiveFree> a(archive_write_new());
  auto failed = [&](absl::string_view what) {
    return absl::InternalError(absl::StrCat(what, ": ", archive_error_string(a.get())));
  };
  // ustar carries everything a dataset needs; no padding after the end-of-archive blocks.
  if (archive_write_set_format_ustar(a.get()) != ARCHIVE_OK ||
      archive_write_set_bytes_in_last_block(a.get(), 1) != ARCHIVE_OK) {
    return failed("tar setup");
  }
  if (archive_write_open_filename(a.get(), out.c_str()) != ARCHIVE_OK) {
    return failed(absl::StrCat("cannot create ", out));
  }
  std::string buffer(1 << 20, '\0');
  for (const FileToPack& file : *files) {
    std::unique_ptr<archive_entry, EntryFree> entry(archive_entry_new());
    archive_entry_copy_pathname(entry.get(), file.name.c_str());
    archive_entry_set_filetype(entry.get(), AE_IFREG);
    archive_entry_set_perm(entry.get(), 0644);
    archive_entry_set_size(entry.get(), file.size);
    archive_entry_set_mtime(entry.get(), 0, 0);
    if (archive_write_header(a.get(), entry.get()) != ARCHIVE_OK) {
      return absl::InvalidArgumentError(
          absl::StrCat(file.name, ": ", archive_error_string(a.get())));
    }
    std::ifstream in(file.path, std::ios::binary);
    int64_t written = 0;
    while (in) {
      in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
      const auto n = static_cast<size_t>(in.gcount());
      if (n == 0) break;
      if (archive_write_data(a.get(), buffer.data(), n) != static_cast<la_ssize_t>(n)) {
        return failed(absl::StrCat("writing ", out));
      }
      written += static_cast<int64_t>(n);
    }
    if (in.bad() || written != file.size) {
      return absl::DataLossError(absl::StrCat(file.path.string(), " could not be read whole (",
                                              written, " of ", file.size,
                                              " bytes; did it change while packing?)"));
    }
  }
  if (archive_write_close(a.get()) != ARCHIVE_OK) return failed(absl::StrCat("closing ", out));
  return static_cast<int64_t>(files->size());
}

}  // namespace qnet::client
