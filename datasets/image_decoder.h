// Encoded images (JPEG through libjpeg-turbo, PNG through libspng) to uint8 CHW pixels, for the
// formats that store image files (imagefolder, archive). The type is told by the magic bytes,
// never by the file name. Headers are read and checked against the size caps before any pixel
// buffer is allocated, so a file that claims 100000 x 100000 pixels costs nothing.
//
//   absl::StatusOr<ImageHeader> header = ReadImageHeader("train/cat/1.png", bytes);
//   absl::StatusOr<Image> image = DecodeImage("train/cat/1.png", bytes, /*channels=*/3);
//
// Grey and grey+alpha images have one channel, every other colour type three (alpha dropped);
// DecodeImage replicates a grey image to three channels when asked. Errors are INVALID_ARGUMENT
// "NAME: PROBLEM". Both functions are thread-safe (no shared state).
#ifndef QNET_DATASETS_IMAGE_DECODER_H_
#define QNET_DATASETS_IMAGE_DECODER_H_

#include <cstdint>
#include <span>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "datasets/dataset_format.h"

namespace qnet::datasets {

// Caps on what a header may declare: no training image comes near them, and a corrupt or hostile
// header must not make a process allocate gigabytes.
inline constexpr int64_t kMaxImageSide = 16384;
inline constexpr int64_t kMaxImagePixels = int64_t{1} << 28;  // height x width

// INVALID_ARGUMENT "NAME: header declares WxH pixels, more than the limit ..." beyond the caps,
// or for an empty image.
absl::Status CheckImageSize(absl::string_view name, int64_t height, int64_t width);

enum class ImageType { kJpeg, kPng };

struct ImageHeader {
  ImageType type;
  ImageShape shape;  // channels 1 (grey) or 3 (colour)
};

// Whether `bytes` start with a JPEG or PNG signature.
bool LooksLikeImage(std::span<const uint8_t> bytes);

// Type, size and colour from the header alone. `bytes` may be a prefix of the file; a header that
// runs past it is reported as truncated (read more and ask again).
absl::StatusOr<ImageHeader> ReadImageHeader(absl::string_view name, std::span<const uint8_t> bytes);

// Every pixel, as `channels` (1 or 3) planes. A colour image asked for one channel is refused:
// callers choose the channels from the headers (any colour image makes a dataset colour).
absl::StatusOr<Image> DecodeImage(absl::string_view name, std::span<const uint8_t> bytes,
                                  int64_t channels);

}  // namespace qnet::datasets

#endif  // QNET_DATASETS_IMAGE_DECODER_H_
