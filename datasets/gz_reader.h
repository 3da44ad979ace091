// Reading dataset files for the format parsers: one zlib reader serves gzip-compressed and raw
// files alike (zlib passes uncompressed data through), reads in bounded chunks so memory follows
// what a file really holds rather than what its header claims, and names the file in every error.
//
//   absl::StatusOr<GzReader> reader = GzReader::Open(dir + "/train-labels-idx1-ubyte.gz");
//   if (!reader.ok()) return reader.status();  // NOT_FOUND naming the file
//   std::vector<uint8_t> header;
//   if (absl::Status s = reader->ReadExactly(8, header, "the IDX header"); !s.ok()) return s;
#ifndef QNET_DATASETS_GZ_READER_H_
#define QNET_DATASETS_GZ_READER_H_

#include <zlib.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace qnet::datasets {

// Larger claims are refused before anything is allocated: no real image dataset file is this big,
// and a corrupt header must not make a process allocate gigabytes.
inline constexpr uint64_t kMaxFileBytes = uint64_t{1} << 31;

// Size of a regular file, or -1 if it does not exist (or is not a regular file).
int64_t FileSize(const std::string& path);

// INVALID_ARGUMENT "PATH: PROBLEM".
absl::Status MalformedFile(const std::string& path, absl::string_view problem);

class GzReader {
 public:
  // NOT_FOUND when `path` is not a regular file, PERMISSION_DENIED when it cannot be opened.
  static absl::StatusOr<GzReader> Open(const std::string& path);

  // Appends exactly n bytes to `out`; a short read is a truncated file, and the message says
  // which part (`what`) it cut off.
  absl::Status ReadExactly(uint64_t n, std::vector<uint8_t>& out, absl::string_view what);
  // Appends everything left, refusing more than `limit` bytes in `out`.
  absl::Status ReadAll(uint64_t limit, std::vector<uint8_t>& out);
  // After the declared content: anything left means the header and the file disagree.
  absl::Status ExpectEnd();

  // True when the file is not gzip-compressed (valid after the first read).
  bool raw() const { return gzdirect(file_.get()) == 1; }
  int64_t file_size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  struct Closer {
    void operator()(gzFile f) const { gzclose(f); }
  };
  GzReader(std::string path, int64_t size, gzFile f);

  std::string path_;
  int64_t size_;
  std::unique_ptr<gzFile_s, Closer> file_;
};

}  // namespace qnet::datasets

#endif  // QNET_DATASETS_GZ_READER_H_
