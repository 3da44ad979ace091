#include "workers/worker/worker_checkpoint.h"

#include <filesystem>
#include <fstream>
#include <vector>

#include "absl/strings/str_cat.h"

namespace qnet::worker {
namespace {

namespace fs = std::filesystem;

constexpr char kMagic[] = "qnet-checkpoint/1";
constexpr size_t kMaxNameLength = 200;

// A plain base name: it becomes a path under the checkpoint directory.
bool SafeName(const std::string& name) {
  if (name.empty() || name.size() > kMaxNameLength || name[0] == '.') return false;
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

// Copies the rest of `in` to `out`; false on a read or write error.
bool CopyStream(std::istream& in, std::ostream& out) {
  std::vector<char> buffer(1 << 20);
  while (in) {
    in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
    out.write(buffer.data(), in.gcount());
    if (!out) return false;
  }
  return !in.bad();
}

}  // namespace

absl::Status PackCheckpoint(const std::string& checkpoint_path, const std::string& envelope_path) {
  const std::string name = fs::path(checkpoint_path).filename().string();
  if (!SafeName(name)) {
    return absl::InvalidArgumentError(
        absl::StrCat("checkpoint file name '", name, "' cannot be shipped (want [A-Za-z0-9._-])"));
  }
  std::ifstream in(checkpoint_path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open checkpoint ", checkpoint_path));
  std::ofstream out(envelope_path, std::ios::binary | std::ios::trunc);
  if (!out) return absl::PermissionDeniedError(absl::StrCat("cannot write ", envelope_path));
  out << kMagic << "\n" << name << "\n";
  if (!CopyStream(in, out)) {
    return absl::DataLossError(absl::StrCat("copying ", checkpoint_path, " to ", envelope_path));
  }
  out.close();
  if (!out) return absl::DataLossError(absl::StrCat("writing ", envelope_path));
  return absl::OkStatus();
}

absl::StatusOr<std::string> UnpackCheckpoint(const std::string& envelope_path,
                                             const std::string& dir) {
  std::ifstream in(envelope_path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", envelope_path));
  std::string magic, name;
  std::getline(in, magic);
  if (magic != kMagic) {
    return absl::InvalidArgumentError(
        absl::StrCat(envelope_path, " is not a qnet-worker checkpoint (no '", kMagic, "' header)"));
  }
  std::getline(in, name);
  if (!in || !SafeName(name)) {
    return absl::InvalidArgumentError(
        absl::StrCat(envelope_path, ": checkpoint names an unsafe file '", name, "'"));
  }
  std::error_code ec;
  fs::create_directories(dir, ec);
  const std::string path = (fs::path(dir) / name).string();
  const std::string temp = path + ".unpacking";
  {
    std::ofstream out(temp, std::ios::binary | std::ios::trunc);
    if (!out) return absl::PermissionDeniedError(absl::StrCat("cannot write ", temp));
    if (!CopyStream(in, out)) {
      fs::remove(temp, ec);
      return absl::DataLossError(absl::StrCat("unpacking ", envelope_path, " to ", temp));
    }
  }
  // The engine scans the directory for ckpt-*.pt: the file appears only once complete.
  fs::rename(temp, path, ec);
  if (ec) return absl::PermissionDeniedError(absl::StrCat("rename to ", path, ": ", ec.message()));
  return path;
}

}  // namespace qnet::worker
