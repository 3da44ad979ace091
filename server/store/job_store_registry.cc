#include "server/store/job_store_registry.h"

#include <filesystem>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/registry.h"

namespace qnet::server {
std::string KnownSchemes() {
  return absl::StrJoin(JobStoreSchemes(), ", ", [](std::string* out, const auto& entry) {
    absl::StrAppend(out, entry.first, " (", entry.second.example, ")");
  });
}

const std::map<std::string, JobStoreScheme, std::less<>>& JobStoreSchemes() {
  return Registry<JobStoreScheme>::Global().entries();
}

absl::StatusOr<std::unique_ptr<JobStore>> OpenJobStore(absl::string_view uri) {
  const size_t sep = uri.find("://");
  if (sep == absl::string_view::npos || sep == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "job store URI \"", uri, "\" is not SCHEME://LOCATION; known schemes: ", KnownSchemes()));
  }
  const std::string scheme = absl::AsciiStrToLower(uri.substr(0, sep));
  if (const JobStoreScheme* s = Registry<JobStoreScheme>::Global().Find(scheme)) {
    return s->open(uri.substr(sep + 3));
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
