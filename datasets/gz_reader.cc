#include "datasets/gz_reader.h"

#include <sys/stat.h>

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"

namespace qnet::datasets {
namespace {

constexpr size_t kChunkBytes = size_t{1} << 20;

}  // namespace

int64_t FileSize(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return -1;
  return static_cast<int64_t>(st.st_size);
}

absl::Status MalformedFile(const std::string& path, absl::string_view problem) {
  return absl::InvalidArgumentError(absl::StrCat(path, ": ", problem));
}

absl::StatusOr<GzReader> GzReader::Open(const std::string& path) {
  const int64_t size = FileSize(path);
  if (size < 0) return absl::NotFoundError(absl::StrCat(path, ": file not found"));
  gzFile f = gzopen(path.c_str(), "rb");
  if (f == nullptr) return absl::PermissionDeniedError(absl::StrCat(path, ": cannot open"));
  return GzReader(path, size, f);
}

GzReader::GzReader(std::string path, int64_t size, gzFile f)
    : path_(std::move(path)), size_(size), file_(f) {}

absl::Status GzReader::ReadExactly(uint64_t n, std::vector<uint8_t>& out, absl::string_view what) {
  uint64_t got = 0;
  while (got < n) {
    const size_t want = static_cast<size_t>(std::min<uint64_t>(kChunkBytes, n - got));
    const size_t before = out.size();
    out.resize(before + want);
    const int r = gzread(file_.get(), out.data() + before, static_cast<unsigned>(want));
    if (r < 0) return MalformedFile(path_, absl::StrCat("corrupt data while reading ", what));
    out.resize(before + static_cast<size_t>(r));
    got += static_cast<uint64_t>(r);
    if (static_cast<size_t>(r) < want) {
      return MalformedFile(path_, absl::StrCat("truncated: ", what, " needs ", n,
                                               " bytes but the file ends after ", got));
    }
  }
  return absl::OkStatus();
}

absl::Status GzReader::ReadAll(uint64_t limit, std::vector<uint8_t>& out) {
  while (true) {
    const size_t before = out.size();
    out.resize(before + kChunkBytes);
    const int r = gzread(file_.get(), out.data() + before, static_cast<unsigned>(kChunkBytes));
    if (r < 0) return MalformedFile(path_, "corrupt data");
    out.resize(before + static_cast<size_t>(r));
    if (out.size() > limit) {
      return MalformedFile(path_, absl::StrCat("larger than the ", limit, "-byte limit"));
    }
    if (r == 0) return absl::OkStatus();
  }
}

absl::Status GzReader::ExpectEnd() {
  uint8_t extra = 0;
  const int r = gzread(file_.get(), &extra, 1);
  if (r < 0) return MalformedFile(path_, "corrupt data after the declared content");
  if (r > 0) return MalformedFile(path_, "trailing bytes after the size the header declares");
  return absl::OkStatus();
}

}  // namespace qnet::datasets
