#include "datasets/image_decoder.h"

#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <memory>
#include <new>
#include <utility>
#include <vector>

// jpeglib.h needs size_t and FILE declared before it.
#include <jerror.h>
#include <jpeglib.h>
#include <spng.h>

#include "absl/strings/str_cat.h"
#include "datasets/gz_reader.h"

namespace qnet::datasets {
namespace {

constexpr uint8_t kJpegMagic[] = {0xff, 0xd8, 0xff};
constexpr uint8_t kPngMagic[] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
// libjpeg decodes a progressive file scan by scan; a crafted file with thousands of tiny scans
// would take minutes. Real encoders write about ten.
constexpr int kMaxJpegScans = 500;
// Ancillary PNG chunks (text, ICC profiles) are buffered whole; real ones are kilobytes.
constexpr size_t kMaxPngChunkBytes = size_t{16} << 20;

bool StartsWith(std::span<const uint8_t> bytes, std::span<const uint8_t> magic) {
  return bytes.size() >= magic.size() && std::memcmp(bytes.data(), magic.data(), magic.size()) == 0;
}

absl::Status CheckChannels(absl::string_view name, const ImageShape& stored, int64_t channels) {
  if (channels != 1 && channels != 3) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": cannot decode to ", channels, " channels (1 or 3)"));
  }
  if (stored.channels > channels) {
    return MalformedFile(std::string(name),
                         "is a colour image but the dataset was opened as grey (did it change?)");
  }
  return absl::OkStatus();
}

// HWC rows as the decoders write them to CHW planes.
std::vector<uint8_t> ToPlanes(const std::vector<uint8_t>& hwc, int64_t channels) {
  if (channels == 1) return hwc;
  const size_t plane = hwc.size() / channels;
  std::vector<uint8_t> chw(hwc.size());
  for (size_t p = 0; p < plane; ++p) {
    for (int64_t c = 0; c < channels; ++c) chw[c * plane + p] = hwc[p * channels + c];
  }
  return chw;
}

// --- JPEG (libjpeg-turbo) ---
//
// libjpeg reports errors by calling error_exit, which must not return: the decoder jumps back
// with longjmp to the setjmp of the method that called into the library. Those methods hold only
// trivially destructible locals, so the jump skips no destructor.
class JpegDecoder {
 public:
  JpegDecoder() {
    cinfo_.err = jpeg_std_error(&errors_.pub);
    errors_.pub.error_exit = OnError;
    errors_.pub.emit_message = OnMessage;
    progress_.progress_monitor = OnProgress;
    created_ = Create();
    if (created_) cinfo_.progress = &progress_;
  }
  ~JpegDecoder() {
    if (created_) jpeg_destroy_decompress(&cinfo_);
  }
  JpegDecoder(const JpegDecoder&) = delete;
  JpegDecoder& operator=(const JpegDecoder&) = delete;

  absl::StatusOr<ImageShape> ReadHeader(absl::string_view name, std::span<const uint8_t> bytes) {
    if (!created_ || !ReadHeaderOrJump(bytes)) return Failure(name);
    switch (cinfo_.jpeg_color_space) {
      case JCS_GRAYSCALE:
      case JCS_YCbCr:
      case JCS_RGB:
        break;
      default:  // CMYK, YCCK: libjpeg cannot convert them to RGB
        return MalformedFile(std::string(name),
                             absl::StrCat("JPEG in a colour space other than grey, YCbCr or RGB (",
                                          cinfo_.num_components, " components)"));
    }
    ImageShape shape{cinfo_.jpeg_color_space == JCS_GRAYSCALE ? 1 : 3, cinfo_.image_height,
                     cinfo_.image_width};
    if (absl::Status s = CheckImageSize(name, shape.height, shape.width); !s.ok()) return s;
    return shape;
  }

  // After ReadHeader: all pixels as `channels` interleaved samples per pixel.
  absl::Status ReadPixels(absl::string_view name, int64_t channels, std::vector<uint8_t>& hwc) {
    cinfo_.out_color_space = channels == 1 ? JCS_GRAYSCALE : JCS_RGB;
    hwc.resize(static_cast<size_t>(cinfo_.image_height) * cinfo_.image_width * channels);
    if (!ReadPixelsOrJump(hwc.data(), static_cast<size_t>(cinfo_.image_width) * channels)) {
      return Failure(name);
    }
    return absl::OkStatus();
  }

 private:
  struct ErrorManager {
    jpeg_error_mgr pub;  // first, so the library's pointer to it is a pointer to this
    std::jmp_buf jump;
    char message[JMSG_LENGTH_MAX];
  };

  static void OnError(j_common_ptr cinfo) {
    auto* errors = reinterpret_cast<ErrorManager*>(cinfo->err);
    cinfo->err->format_message(cinfo, errors->message);
    std::longjmp(errors->jump, 1);
  }
  // Warnings (level -1) that mean missing or damaged image data end the decode: libjpeg would go
  // on and fill the rest with grey. Others (extra bytes between markers) are harmless.
  static void OnMessage(j_common_ptr cinfo, int level) {
    const int code = cinfo->err->msg_code;
    if (level == -1 &&
        (code == JWRN_JPEG_EOF || code == JWRN_HIT_MARKER || code == JWRN_HUFF_BAD_CODE)) {
      OnError(cinfo);
    }
  }
  static void OnProgress(j_common_ptr cinfo) {
    if (!cinfo->is_decompressor) return;
    if (reinterpret_cast<j_decompress_ptr>(cinfo)->input_scan_number > kMaxJpegScans) {
      auto* errors = reinterpret_cast<ErrorManager*>(cinfo->err);
      std::snprintf(errors->message, sizeof errors->message, "more than %d progressive scans",
                    kMaxJpegScans);
      std::longjmp(errors->jump, 1);
    }
  }

  bool Create() {
    if (setjmp(errors_.jump)) return false;
    jpeg_create_decompress(&cinfo_);
    return true;
  }
  bool ReadHeaderOrJump(std::span<const uint8_t> bytes) {
    if (setjmp(errors_.jump)) return false;
    jpeg_mem_src(&cinfo_, bytes.data(), static_cast<unsigned long>(bytes.size()));
    jpeg_read_header(&cinfo_, TRUE);
    return true;
  }
  bool ReadPixelsOrJump(uint8_t* out, size_t stride) {
    if (setjmp(errors_.jump)) return false;
    jpeg_start_decompress(&cinfo_);
    while (cinfo_.output_scanline < cinfo_.output_height) {
      JSAMPROW row = out + cinfo_.output_scanline * stride;
      jpeg_read_scanlines(&cinfo_, &row, 1);
    }
    jpeg_finish_decompress(&cinfo_);
    return true;
  }

  absl::Status Failure(absl::string_view name) const {
    return MalformedFile(std::string(name),
                         absl::StrCat("corrupt or truncated JPEG: ",
                                      created_ ? errors_.message : "cannot start libjpeg"));
  }

  jpeg_decompress_struct cinfo_{};
  ErrorManager errors_{};
  jpeg_progress_mgr progress_{};
  bool created_ = false;
};

absl::StatusOr<Image> DecodeJpeg(absl::string_view name, std::span<const uint8_t> bytes,
                                 int64_t channels) {
  JpegDecoder decoder;
  absl::StatusOr<ImageShape> stored = decoder.ReadHeader(name, bytes);
  if (!stored.ok()) return stored.status();
  if (absl::Status s = CheckChannels(name, *stored, channels); !s.ok()) return s;
  std::vector<uint8_t> hwc;
  if (absl::Status s = decoder.ReadPixels(name, channels, hwc); !s.ok()) return s;
  return Image{{channels, stored->height, stored->width}, ToPlanes(hwc, channels)};
}

// --- PNG (libspng) ---

struct SpngFree {
  void operator()(spng_ctx* ctx) const { spng_ctx_free(ctx); }
};
using SpngContext = std::unique_ptr<spng_ctx, SpngFree>;

absl::Status PngError(absl::string_view name, int error) {
  return MalformedFile(std::string(name),
                       absl::StrCat("corrupt or truncated PNG: ", spng_strerror(error)));
}

// A decoder over `bytes` with its header read and checked.
absl::StatusOr<SpngContext> OpenPng(absl::string_view name, std::span<const uint8_t> bytes,
                                    spng_ihdr& ihdr) {
  SpngContext ctx(spng_ctx_new(0));
  if (ctx == nullptr) return absl::ResourceExhaustedError(absl::StrCat(name, ": out of memory"));
  if (int e = spng_set_png_buffer(ctx.get(), bytes.data(), bytes.size()); e != 0) {
    return PngError(name, e);
  }
  if (int e = spng_set_chunk_limits(ctx.get(), kMaxPngChunkBytes, kMaxPngChunkBytes); e != 0) {
    return PngError(name, e);
  }
  if (int e = spng_get_ihdr(ctx.get(), &ihdr); e != 0) return PngError(name, e);
  if (absl::Status s = CheckImageSize(name, ihdr.height, ihdr.width); !s.ok()) return s;
  return ctx;
}

ImageShape PngShape(const spng_ihdr& ihdr) {
  const bool grey = ihdr.color_type == SPNG_COLOR_TYPE_GRAYSCALE ||
                    ihdr.color_type == SPNG_COLOR_TYPE_GRAYSCALE_ALPHA;
  return {grey ? 1 : 3, ihdr.height, ihdr.width};
}

absl::StatusOr<Image> DecodePng(absl::string_view name, std::span<const uint8_t> bytes,
                                int64_t channels) {
  spng_ihdr ihdr{};
  absl::StatusOr<SpngContext> ctx = OpenPng(name, bytes, ihdr);
  if (!ctx.ok()) return ctx.status();
  const ImageShape stored = PngShape(ihdr);
  if (absl::Status s = CheckChannels(name, stored, channels); !s.ok()) return s;
  // libspng converts every colour type and bit depth to RGB8; G8 only from grey of <= 8 bits.
  const bool direct_grey = ihdr.color_type == SPNG_COLOR_TYPE_GRAYSCALE && ihdr.bit_depth <= 8;
  const bool grey_out = channels == 1 && direct_grey;
  const int fmt = grey_out ? SPNG_FMT_G8 : SPNG_FMT_RGB8;
  size_t size = 0;
  if (int e = spng_decoded_image_size(ctx->get(), fmt, &size); e != 0) return PngError(name, e);
  std::vector<uint8_t> hwc(size);
  if (int e = spng_decode_image(ctx->get(), hwc.data(), hwc.size(), fmt, 0); e != 0) {
    return PngError(name, e);
  }
  Image image{{channels, stored.height, stored.width}, {}};
  if (channels == 1 && !grey_out) {
    // A grey image decoded as RGB8 (16-bit, or with alpha): the three samples are equal.
    image.pixels.resize(hwc.size() / 3);
    for (size_t p = 0; p < image.pixels.size(); ++p) image.pixels[p] = hwc[3 * p];
  } else {
    image.pixels = ToPlanes(hwc, channels);
  }
  return image;
}

absl::Status NotAnImage(absl::string_view name) {
  return MalformedFile(std::string(name), "not a JPEG or PNG image");
}

}  // namespace

absl::Status CheckImageSize(absl::string_view name, int64_t height, int64_t width) {
  if (height <= 0 || width <= 0) {
    return MalformedFile(std::string(name),
                         absl::StrCat("header declares an empty image (", width, "x", height, ")"));
  }
  if (height > kMaxImageSide || width > kMaxImageSide || height * width > kMaxImagePixels) {
    return MalformedFile(
        std::string(name),
        absl::StrCat("header declares ", width, "x", height, " pixels, more than the limit of ",
                     kMaxImageSide, " a side and ", kMaxImagePixels, " in all"));
  }
  return absl::OkStatus();
}

bool LooksLikeImage(std::span<const uint8_t> bytes) {
  return StartsWith(bytes, kJpegMagic) || StartsWith(bytes, kPngMagic);
}

absl::StatusOr<ImageHeader> ReadImageHeader(absl::string_view name,
                                            std::span<const uint8_t> bytes) {
  if (StartsWith(bytes, kJpegMagic)) {
    JpegDecoder decoder;
    absl::StatusOr<ImageShape> shape = decoder.ReadHeader(name, bytes);
    if (!shape.ok()) return shape.status();
    return ImageHeader{ImageType::kJpeg, *shape};
  }
  if (StartsWith(bytes, kPngMagic)) {
    spng_ihdr ihdr{};
    absl::StatusOr<SpngContext> ctx = OpenPng(name, bytes, ihdr);
    if (!ctx.ok()) return ctx.status();
    return ImageHeader{ImageType::kPng, PngShape(ihdr)};
  }
  return NotAnImage(name);
}

absl::StatusOr<Image> DecodeImage(absl::string_view name, std::span<const uint8_t> bytes,
                                  int64_t channels) {
  try {
    if (StartsWith(bytes, kJpegMagic)) return DecodeJpeg(name, bytes, channels);
    if (StartsWith(bytes, kPngMagic)) return DecodePng(name, bytes, channels);
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError(absl::StrCat(name, ": out of memory decoding the image"));
  }
  return NotAnImage(name);
}

}  // namespace qnet::datasets
