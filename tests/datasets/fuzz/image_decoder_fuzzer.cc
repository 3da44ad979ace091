// Fuzz target: the image decoder (JPEG through libjpeg-turbo, PNG through libspng) on arbitrary
// bytes. Any input must give an image whose size matches its header, or an error; never a crash,
// a hang or an allocation beyond the header caps.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>

#include "datasets/image_decoder.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace qnet::datasets;
  const std::span<const uint8_t> bytes(data, size);
  absl::StatusOr<ImageHeader> header = ReadImageHeader("input", bytes);
  for (int64_t channels : {1, 3}) {
    absl::StatusOr<Image> image = DecodeImage("input", bytes, channels);
    if (!image.ok()) continue;
    // A decoded image agrees with its header and holds exactly its pixels.
    if (!header.ok() || image->shape.height != header->shape.height ||
        image->shape.width != header->shape.width || image->shape.channels != channels ||
        image->pixels.size() != static_cast<size_t>(image->shape.pixels())) {
      std::abort();
    }
  }
  return 0;
}
