// Fuzz target: the .npy header parser (a Python dict literal) and the dtype and size checks that
// follow it, on arbitrary bytes.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>

#include "datasets/gz_reader.h"
#include "datasets/npy_header.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace qnet::datasets;
  absl::StatusOr<NpyHeader> header =
      ParseNpyHeader("input.npy", std::span<const uint8_t>(data, size));
  if (!header.ok()) return 0;
  if (header->data_offset > size) std::abort();  // a parsed header lies within the input
  absl::StatusOr<NpyDtype> dtype = ParseNpyDtype("input.npy", header->descr);
  if (!dtype.ok()) return 0;
  absl::StatusOr<uint64_t> bytes =
      NpyDataBytes("input.npy", header->shape, dtype->bytes, kMaxFileBytes);
  if (bytes.ok() && *bytes > kMaxFileBytes) std::abort();
  return 0;
}
