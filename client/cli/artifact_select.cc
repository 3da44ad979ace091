#include "client/cli/artifact_select.h"

#include <set>

#include "absl/strings/str_cat.h"

namespace qnet::cli {

std::vector<v1::Artifact> SelectArtifacts(const v1::Job& job, std::string_view format,
                                          const v1::Capabilities& capabilities) {
  std::set<std::string, std::less<>> kinds = {std::string(format)};
  for (const v1::ExportFormat& f : capabilities.export_formats()) {
    if (f.name() == format) kinds.insert(f.artifact_kinds().begin(), f.artifact_kinds().end());
  }
  std::vector<v1::Artifact> selected;
  for (const v1::Artifact& a : job.artifacts()) {
    if (format.empty() || kinds.contains(a.kind())) selected.push_back(a);
  }
  return selected;
}

std::string ArtifactFileName(const v1::Artifact& artifact) {
  std::string name = artifact.filename();
  const size_t slash = name.find_last_of("/\\");
  if (slash != std::string::npos) name = name.substr(slash + 1);
  for (char& c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '-';
    if (!ok) c = '_';
  }
  if (name.empty() || name.find_first_not_of('.') == std::string::npos) {
    std::string hex = artifact.digest();
    if (hex.starts_with("sha256:")) hex = hex.substr(7);
    std::string kind = artifact.kind().empty() ? "artifact" : artifact.kind();
    for (char& c : kind) {
      if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))) c = '_';
    }
    name = absl::StrCat(kind, "-", hex.substr(0, 12));
  }
  return name;
}

std::vector<std::string> UniqueFileNames(const std::vector<v1::Artifact>& artifacts) {
  std::vector<std::string> names;
  std::set<std::string> used;
  for (const v1::Artifact& a : artifacts) {
    const std::string base = ArtifactFileName(a);
    std::string name = base;
    for (int n = 2; used.count(name) > 0; ++n) {
      const size_t dot = base.find_last_of('.');
      name = (dot == std::string::npos || dot == 0)
                 ? absl::StrCat(base, "-", n)
                 : absl::StrCat(base.substr(0, dot), "-", n, base.substr(dot));
    }
    used.insert(name);
    names.push_back(name);
  }
  return names;
}

}  // namespace qnet::cli
