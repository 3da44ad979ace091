// The header of a NumPy .npy array (format versions 1 to 3): the magic "\x93NUMPY", the version,
// the header length, then a Python dict literal such as
//   {'descr': '|u1', 'fortran_order': False, 'shape': (60000, 28, 28), }
// Only the three keys NumPy writes are accepted, each once; values are a string, True/False and a
// tuple of non-negative integers. Anything else (other keys, nested values, Fortran order) is
// refused: this is a small parser for what np.save writes, not a Python evaluator.
//
//   absl::StatusOr<NpyHeader> header = ParseNpyHeader("x_train.npy", first_bytes);
//   absl::StatusOr<NpyDtype> dtype = ParseNpyDtype("x_train.npy", header->descr);
#ifndef QNET_DATASETS_NPY_HEADER_H_
#define QNET_DATASETS_NPY_HEADER_H_

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace qnet::datasets {

// Longer headers are refused; NumPy pads its own to a multiple of 64 bytes, a few hundred at most.
inline constexpr size_t kMaxNpyHeaderBytes = 64 << 10;

struct NpyHeader {
  std::string descr;           // e.g. "|u1", "<i8"
  std::vector<int64_t> shape;  // () for a scalar
  size_t data_offset = 0;      // where the data starts in the file
};

// Integer element types only (the formats hold uint8 images and integer labels).
struct NpyDtype {
  bool is_signed = false;
  int bytes = 1;  // 1, 2, 4 or 8
  bool big_endian = false;

  bool is_uint8() const { return !is_signed && bytes == 1; }
};

// Parses the header at the start of `bytes` (which may hold more, e.g. the data). `name` is used
// in messages. Refuses a header running past `bytes` as truncated.
absl::StatusOr<NpyHeader> ParseNpyHeader(const std::string& name, std::span<const uint8_t> bytes);

// An integer descr ('<i8', '|u1', '>u2', ...); anything else (floats, objects, strings) is refused
// naming the descr.
absl::StatusOr<NpyDtype> ParseNpyDtype(const std::string& name, const std::string& descr);

// Element count of `shape` times `item_bytes`, refused beyond `limit` (checked at every step, so
// the product cannot overflow).
absl::StatusOr<uint64_t> NpyDataBytes(const std::string& name, const std::vector<int64_t>& shape,
                                      int item_bytes, uint64_t limit);

}  // namespace qnet::datasets

#endif  // QNET_DATASETS_NPY_HEADER_H_
