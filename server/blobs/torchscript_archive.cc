#include "server/blobs/torchscript_archive.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <unzip.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <memory>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace qnet::server {
namespace {

// The work one check may do, whatever the file claims. TorchScript lists data.pkl after one entry
// per tensor, so a model with tens of thousands of tensors fits. minizip reads the directory a few
// bytes per call; the calls are budgeted too, since an entry's extra field may hold thousands of
// empty records that minizip walks one by one.
constexpr uint64_t kMaxEntries = 65536;
constexpr uint64_t kMaxDirectoryBytes = 8 << 20;
constexpr int64_t kMaxReadCalls = 16000000;  // about 150 per plain entry, 0.6 s
constexpr size_t kBufferBytes = 64 << 10;
constexpr int64_t kMinZipBytes = 22;  // an empty archive: its end-of-central-directory record
constexpr size_t kMaxNameBytes = 1024;

absl::Status NotTorchScript(absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat("not a TorchScript archive: ", why));
}

bool IsTorchScriptEntry(absl::string_view name) {
  for (absl::string_view want : {"data.pkl", "constants.pkl"}) {
    if (name == want || absl::EndsWith(name, absl::StrCat("/", want))) return true;
  }
  return false;
}

// The file minizip reads, through its I/O callbacks: its small reads come from a buffer filled
// with pread, and every read or seek spends one call of the budget.
struct ArchiveFile {
  ~ArchiveFile() {
    if (fd >= 0) ::close(fd);
  }
  bool Spend() { return --calls_left >= 0; }
  bool Fill() {
    buffer.resize(static_cast<size_t>(std::min<uint64_t>(kBufferBytes, size - pos)));
    ssize_t got;
    do {
      got = ::pread(fd, buffer.data(), buffer.size(), static_cast<off_t>(pos));
    } while (got < 0 && errno == EINTR);
    buffer.resize(got > 0 ? static_cast<size_t>(got) : 0);
    buffer_start = pos;
    return got > 0;
  }

  int fd = -1;
  uint64_t size = 0;
  uint64_t pos = 0;
  std::string buffer;  // the bytes at [buffer_start, buffer_start + buffer.size())
  uint64_t buffer_start = 0;
  int64_t calls_left = kMaxReadCalls;
};

voidpf OpenFile(voidpf opaque, const void*, int) { return opaque; }  // opened by the check

uLong ReadFile(voidpf, voidpf stream, void* out, uLong n) {
  ArchiveFile& f = *static_cast<ArchiveFile*>(stream);
  if (!f.Spend()) return 0;
  uLong done = 0;
  while (done < n && f.pos < f.size) {
    if (f.pos < f.buffer_start || f.pos >= f.buffer_start + f.buffer.size()) {
      if (!f.Fill()) break;
    }
    const uint64_t offset = f.pos - f.buffer_start;
    const uLong take = static_cast<uLong>(std::min<uint64_t>(n - done, f.buffer.size() - offset));
    std::memcpy(static_cast<char*>(out) + done, f.buffer.data() + offset, take);
    done += take;
    f.pos += take;
  }
  return done;
}

uLong WriteFile(voidpf, voidpf, const void*, uLong) { return 0; }

ZPOS64_T TellFile(voidpf, voidpf stream) { return static_cast<ArchiveFile*>(stream)->pos; }

long SeekFile(voidpf, voidpf stream, ZPOS64_T offset, int origin) {
  ArchiveFile& f = *static_cast<ArchiveFile*>(stream);
  if (!f.Spend()) return -1;
  switch (origin) {
    case ZLIB_FILEFUNC_SEEK_SET:
      f.pos = offset;
      return 0;
    case ZLIB_FILEFUNC_SEEK_CUR:
      f.pos += offset;
      return 0;
    case ZLIB_FILEFUNC_SEEK_END:
      f.pos = f.size + offset;
      return 0;
    default:
      return -1;
  }
}

int CloseFile(voidpf, voidpf) { return 0; }  // the check closes it
int FileError(voidpf, voidpf) { return 0; }

}  // namespace

absl::Status CheckTorchScriptArchive(const std::string& path) {
  ArchiveFile file;
  file.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  struct stat st {};
  if (file.fd < 0 || ::fstat(file.fd, &st) != 0) {
    return absl::InternalError(absl::StrCat("cannot open ", path, ": ", std::strerror(errno)));
  }
  file.size = static_cast<uint64_t>(st.st_size);
  if (st.st_size < kMinZipBytes) return NotTorchScript("too small to be a ZIP file");
  char magic[4] = {};
  if (::pread(file.fd, magic, 4, 0) != 4 || std::memcmp(magic, "PK\3\4", 4) != 0) {
    return NotTorchScript("not a ZIP file (no PK\\x03\\x04 header)");
  }
  zlib_filefunc64_def io = {&OpenFile, &ReadFile,  &WriteFile, &TellFile,
                            &SeekFile, &CloseFile, &FileError, &file};
  std::unique_ptr<void, int (*)(unzFile)> zip(unzOpen2_64(path.c_str(), &io), &unzClose);
  const auto corrupt = [&](absl::string_view what) {
    return NotTorchScript(file.calls_left < 0
                              ? "its ZIP directory takes too much work to read (entries with "
                                "huge extra fields?); save the model with torch.jit.save"
                              : what);
  };
  if (zip == nullptr) {
    return corrupt("no readable ZIP end-of-central-directory record (truncated?)");
  }
  if (unzGoToFirstFile(zip.get()) != UNZ_OK) {
    return corrupt("corrupt ZIP central directory (truncated?)");
  }
  const ZPOS64_T directory_start = unzGetOffset64(zip.get());
  char name[kMaxNameBytes + 1];
  for (uint64_t entries = 1;; ++entries) {
    unz_file_info64 info;
    if (unzGetCurrentFileInfo64(zip.get(), &info, name, sizeof(name), nullptr, 0, nullptr, 0) !=
        UNZ_OK) {
      return corrupt("corrupt ZIP central directory (truncated?)");
    }
    if (info.size_filename <= kMaxNameBytes &&
        IsTorchScriptEntry(absl::string_view(name, info.size_filename))) {
      return absl::OkStatus();
    }
    const int next = unzGoToNextFile(zip.get());
    if (next == UNZ_END_OF_LIST_OF_FILE) break;
    if (next != UNZ_OK) return corrupt("corrupt ZIP central directory (truncated?)");
    const ZPOS64_T directory_bytes = unzGetOffset64(zip.get()) - directory_start;
    if (entries == kMaxEntries || directory_bytes > kMaxDirectoryBytes) {
      return NotTorchScript(absl::StrCat("no data.pkl or constants.pkl among the first ", entries,
                                         " ZIP entries (", directory_bytes,
                                         " bytes of directory); save the model with "
                                         "torch.jit.save"));
    }
  }
  return NotTorchScript(
      "a ZIP file without data.pkl or constants.pkl (save the model with torch.jit.save)");
}

}  // namespace qnet::server
