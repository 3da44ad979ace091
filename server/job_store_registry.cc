#include "server/job_store_registry.h"

#include <filesystem>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "server/sqlite_job_store.h"

namespace qnet::server {
namespace {

std::string KnownSchemes() {
  return absl::StrJoin(JobStoreSchemes(), ", ", [](std::string* out, const JobStoreScheme& s) {
    absl::StrAppend(out, s.scheme, " (", s.example, ")");
  });
}

}  // namespace

const std::vector<JobStoreScheme>& JobStoreSchemes() {
  // One line per store. This is an explicit list on purpose, rather than a registrar object in
  // each store's .cc: the stores live in the static archive qnet_server_lib, and a linker leaves
  // out every archive member nothing references. qnetd references only this registry, so a
  // self-registering store would silently be missing from it (and present in the tests, which
  // name the store classes) unless every consumer linked the archive whole. A list cannot be
  // dropped by any linker, needs no link flags, and has no static initialization order to get
  // wrong.
  static const std::vector<JobStoreScheme> schemes = {
      {"sqlite", "sqlite:///var/lib/qnet/jobs.db", &SqliteJobStore::OpenUri},
  };
  return schemes;
}

absl::StatusOr<std::unique_ptr<JobStore>> OpenJobStore(absl::string_view uri) {
  const size_t sep = uri.find("://");
  if (sep == absl::string_view::npos || sep == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "job store URI \"", uri, "\" is not SCHEME://LOCATION; known schemes: ", KnownSchemes()));
  }
  const std::string scheme = absl::AsciiStrToLower(uri.substr(0, sep));
  for (const JobStoreScheme& s : JobStoreSchemes()) {
    if (scheme == s.scheme) return s.open(uri.substr(sep + 3));
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown job store scheme \"", scheme, "\" in \"",
                                                 uri, "\"; known schemes: ", KnownSchemes()));
}

std::string DefaultJobStoreUri(const std::string& data_dir) {
  std::error_code ec;
  std::filesystem::path dir = std::filesystem::absolute(data_dir, ec);
  if (ec) dir = data_dir;  // only when the working folder is gone; Open then names the path
  // Exactly the file qnetd has always used (not normalized: "a/../" may cross a symlink).
  return absl::StrCat("sqlite://", dir.string(), "/jobs.db");
}

}  // namespace qnet::server
