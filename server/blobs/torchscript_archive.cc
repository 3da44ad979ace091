#include "server/blobs/torchscript_archive.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace qnet::server {
namespace {

constexpr uint32_t kLocalHeaderSig = 0x04034b50;
constexpr uint32_t kCentralHeaderSig = 0x02014b50;
constexpr uint32_t kEndOfCentralDirSig = 0x06054b50;
constexpr uint32_t kZip64LocatorSig = 0x07064b50;
constexpr uint32_t kZip64EndSig = 0x06064b50;
constexpr int64_t kEocdSize = 22;
constexpr int64_t kMaxComment = 0xffff;
constexpr int64_t kMaxCentralDirectory = 256 << 20;  // far more than any real model's entries

uint16_t Le16(const unsigned char* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
uint32_t Le32(const unsigned char* p) {
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) |
         (static_cast<uint32_t>(p[2]) << 16) | (static_cast<uint32_t>(p[3]) << 24);
}
uint64_t Le64(const unsigned char* p) {
  return static_cast<uint64_t>(Le32(p)) | (static_cast<uint64_t>(Le32(p + 4)) << 32);
}

absl::Status NotTorchScript(absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat("not a TorchScript archive: ", why));
}

class File {
 public:
  explicit File(const std::string& path) : fd_(::open(path.c_str(), O_RDONLY | O_CLOEXEC)) {}
  ~File() {
    if (fd_ >= 0) ::close(fd_);
  }
  File(const File&) = delete;
  File& operator=(const File&) = delete;
  bool ok() const { return fd_ >= 0; }
  int64_t Size() const {
    struct stat st;
    return ::fstat(fd_, &st) == 0 ? static_cast<int64_t>(st.st_size) : -1;
  }
  // Reads exactly [offset, offset + n) or fails.
  bool ReadAt(int64_t offset, int64_t n, std::string* out) const {
    out->assign(static_cast<size_t>(n), '\0');
    int64_t got = 0;
    while (got < n) {
      ssize_t r = ::pread(fd_, out->data() + got, static_cast<size_t>(n - got), offset + got);
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) return false;
      got += r;
    }
    return true;
  }

 private:
  int fd_;
};

bool IsTorchScriptEntry(absl::string_view name) {
  for (absl::string_view want : {"data.pkl", "constants.pkl"}) {
    if (name == want || absl::EndsWith(name, absl::StrCat("/", want))) return true;
  }
  return false;
}

}  // namespace

absl::Status CheckTorchScriptArchive(const std::string& path) {
  File file(path);
  if (!file.ok()) {
    return absl::InternalError(absl::StrCat("cannot open ", path, ": ", std::strerror(errno)));
  }
  const int64_t size = file.Size();
  if (size < 4 + kEocdSize) return NotTorchScript("too small to be a ZIP file");
  std::string buf;
  if (!file.ReadAt(0, 4, &buf)) return NotTorchScript("unreadable");
  if (Le32(reinterpret_cast<const unsigned char*>(buf.data())) != kLocalHeaderSig) {
    return NotTorchScript("not a ZIP file (no PK\\x03\\x04 header)");
  }

  // The end-of-central-directory record sits in the last 22 + comment bytes.
  const int64_t tail_len = std::min(size, kEocdSize + kMaxComment + 20);
  const int64_t tail_start = size - tail_len;
  std::string tail;
  if (!file.ReadAt(tail_start, tail_len, &tail)) return NotTorchScript("unreadable");
  const auto* t = reinterpret_cast<const unsigned char*>(tail.data());
  int64_t eocd = -1;
  for (int64_t i = tail_len - kEocdSize; i >= 0; --i) {
    if (Le32(t + i) == kEndOfCentralDirSig && i + kEocdSize + Le16(t + i + 20) <= tail_len) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) return NotTorchScript("no ZIP end-of-central-directory record (truncated?)");
  uint64_t entries = Le16(t + eocd + 10);
  uint64_t cd_size = Le32(t + eocd + 12);
  uint64_t cd_offset = Le32(t + eocd + 16);
  if (entries == 0xffff || cd_size == 0xffffffffu || cd_offset == 0xffffffffu) {
    // ZIP64: a locator right before the record points at the ZIP64 end record.
    if (eocd < 20 || Le32(t + eocd - 20) != kZip64LocatorSig) {
      return NotTorchScript("ZIP64 archive without a ZIP64 locator");
    }
    const uint64_t z64 = Le64(t + eocd - 20 + 8);
    std::string rec;
    if (size < 56 || z64 > static_cast<uint64_t>(size - 56) ||
        !file.ReadAt(static_cast<int64_t>(z64), 56, &rec)) {
      return NotTorchScript("ZIP64 end record out of bounds");
    }
    const auto* r = reinterpret_cast<const unsigned char*>(rec.data());
    if (Le32(r) != kZip64EndSig) return NotTorchScript("bad ZIP64 end record");
    entries = Le64(r + 32);
    cd_size = Le64(r + 40);
    cd_offset = Le64(r + 48);
  }
  if (cd_size > static_cast<uint64_t>(kMaxCentralDirectory) ||
      cd_offset > static_cast<uint64_t>(size) ||
      cd_size > static_cast<uint64_t>(size) - cd_offset) {
    return NotTorchScript("central directory out of bounds");
  }
  std::string cd;
  if (!file.ReadAt(static_cast<int64_t>(cd_offset), static_cast<int64_t>(cd_size), &cd)) {
    return NotTorchScript("unreadable central directory");
  }
  const auto* c = reinterpret_cast<const unsigned char*>(cd.data());
  const uint64_t n = cd.size();
  uint64_t pos = 0;
  for (uint64_t i = 0; i < entries && pos + 46 <= n; ++i) {
    if (Le32(c + pos) != kCentralHeaderSig) return NotTorchScript("corrupt central directory");
    const uint64_t name_len = Le16(c + pos + 28);
    const uint64_t extra_len = Le16(c + pos + 30);
    const uint64_t comment_len = Le16(c + pos + 32);
    if (pos + 46 + name_len > n) return NotTorchScript("corrupt central directory");
    absl::string_view name(reinterpret_cast<const char*>(c + pos + 46), name_len);
    if (IsTorchScriptEntry(name)) return absl::OkStatus();
    pos += 46 + name_len + extra_len + comment_len;
  }
  return NotTorchScript(
      "a ZIP file without data.pkl or constants.pkl (save the model with torch.jit.save)");
}

}  // namespace qnet::server
