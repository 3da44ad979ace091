// Image files and archives written in the test itself: PNG through libspng's encoder, JPEG through
// libjpeg's compressor, tar/tar.gz/zip through libarchive's writer. Pixels are a known smooth
// function of (image id, channel, row, column), so a lossless decode must match exactly and a JPEG
// decode closely.
//
//   std::vector<uint8_t> png = qnet::testing::EncodePng(qnet::testing::TestImage(7, 3, 5, 9), 4);
//   qnet::testing::WriteArchive(dir + "/d.tar", qnet::testing::ArchiveKind::kTar,
//                               {{"train/cat/a.png", png}});
#ifndef QNET_TESTS_DATASETS_IMAGE_FILES_H_
#define QNET_TESTS_DATASETS_IMAGE_FILES_H_

#include <archive.h>
#include <archive_entry.h>
#include <jpeglib.h>
#include <spng.h>
#include <zlib.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "datasets/dataset_format.h"

namespace qnet::testing {

// Channel c, row y, column x of test image `id`; stays below 256 for images up to 40 x 40.
inline uint8_t TestPixel(int id, int64_t c, int64_t y, int64_t x) {
  return static_cast<uint8_t>((id % 5) * 20 + c * 30 + y + x);
}

inline datasets::Image TestImage(int id, int64_t channels, int64_t height, int64_t width) {
  datasets::Image image{{channels, height, width}, {}};
  for (int64_t c = 0; c < channels; ++c) {
    for (int64_t y = 0; y < height; ++y) {
      for (int64_t x = 0; x < width; ++x) image.pixels.push_back(TestPixel(id, c, y, x));
    }
  }
  return image;
}

// Sample c of pixel (y, x) in an image of CHW planes.
inline uint8_t At(const datasets::Image& image, int64_t c, int64_t y, int64_t x) {
  return image.pixels[(c * image.shape.height + y) * image.shape.width + x];
}

// A PNG of `image` (1 or 3 channels) stored with `file_channels` samples per pixel: 1 grey,
// 2 grey+alpha, 3 RGB, 4 RGBA (alpha 77); `sixteen_bit` stores grey as 16-bit samples.
inline std::vector<uint8_t> EncodePng(const datasets::Image& image, int file_channels,
                                      bool sixteen_bit = false) {
  const int64_t h = image.shape.height, w = image.shape.width;
  const bool grey = image.shape.channels == 1;
  const int colour_samples = file_channels <= 2 ? 1 : 3;
  std::vector<uint8_t> rows;
  for (int64_t y = 0; y < h; ++y) {
    for (int64_t x = 0; x < w; ++x) {
      for (int k = 0; k < colour_samples; ++k) {
        const uint8_t v = At(image, grey ? 0 : k, y, x);
        if (sixteen_bit) {
          const uint16_t wide = static_cast<uint16_t>(v * 257);  // host order, as SPNG_FMT_PNG
          rows.insert(rows.end(),
                      {static_cast<uint8_t>(wide & 0xff), static_cast<uint8_t>(wide >> 8)});
        } else {
          rows.push_back(v);
        }
      }
      if (file_channels == 2 || file_channels == 4) rows.push_back(77);
    }
  }
  const uint8_t color_type[] = {0, SPNG_COLOR_TYPE_GRAYSCALE, SPNG_COLOR_TYPE_GRAYSCALE_ALPHA,
                                SPNG_COLOR_TYPE_TRUECOLOR, SPNG_COLOR_TYPE_TRUECOLOR_ALPHA};
  spng_ctx* ctx = spng_ctx_new(SPNG_CTX_ENCODER);
  spng_set_option(ctx, SPNG_ENCODE_TO_BUFFER, 1);
  spng_ihdr ihdr{static_cast<uint32_t>(w),
                 static_cast<uint32_t>(h),
                 static_cast<uint8_t>(sixteen_bit ? 16 : 8),
                 color_type[file_channels],
                 0,
                 0,
                 0};
  EXPECT_EQ(spng_set_ihdr(ctx, &ihdr), 0);
  EXPECT_EQ(spng_encode_image(ctx, rows.data(), rows.size(), SPNG_FMT_PNG, SPNG_ENCODE_FINALIZE),
            0);
  size_t size = 0;
  int error = 0;
  auto* png = static_cast<uint8_t*>(spng_get_png_buffer(ctx, &size, &error));
  EXPECT_EQ(error, 0);
  std::vector<uint8_t> out(png, png + size);
  std::free(png);
  spng_ctx_free(ctx);
  return out;
}

// A baseline (or progressive) JPEG of `image` (1 or 3 channels) at quality 95.
inline std::vector<uint8_t> EncodeJpeg(const datasets::Image& image, bool progressive = false) {
  jpeg_compress_struct cinfo{};
  jpeg_error_mgr errors{};
  cinfo.err = jpeg_std_error(&errors);
  jpeg_create_compress(&cinfo);
  unsigned char* buffer = nullptr;
  unsigned long size = 0;
  jpeg_mem_dest(&cinfo, &buffer, &size);
  const int channels = static_cast<int>(image.shape.channels);
  cinfo.image_width = static_cast<JDIMENSION>(image.shape.width);
  cinfo.image_height = static_cast<JDIMENSION>(image.shape.height);
  cinfo.input_components = channels;
  cinfo.in_color_space = channels == 1 ? JCS_GRAYSCALE : JCS_RGB;
  jpeg_set_defaults(&cinfo);
  jpeg_set_quality(&cinfo, 95, TRUE);
  if (progressive) jpeg_simple_progression(&cinfo);
  jpeg_start_compress(&cinfo, TRUE);
  std::vector<uint8_t> row(image.shape.width * channels);
  while (cinfo.next_scanline < cinfo.image_height) {
    for (int64_t x = 0; x < image.shape.width; ++x) {
      for (int c = 0; c < channels; ++c)
        row[x * channels + c] = At(image, c, cinfo.next_scanline, x);
    }
    JSAMPROW rows[] = {row.data()};
    jpeg_write_scanlines(&cinfo, rows, 1);
  }
  jpeg_finish_compress(&cinfo);
  jpeg_destroy_compress(&cinfo);
  std::vector<uint8_t> out(buffer, buffer + size);
  std::free(buffer);
  return out;
}

// Largest absolute difference between a decoded image and the expected one (255 if decoding
// failed or the shapes differ).
inline int MaxDifference(const absl::StatusOr<datasets::Image>& a, const datasets::Image& b) {
  if (!a.ok() || !(a->shape == b.shape) || a->pixels.size() != b.pixels.size()) return 255;
  int most = 0;
  for (size_t i = 0; i < b.pixels.size(); ++i) {
    most = std::max(most, std::abs(int{a->pixels[i]} - int{b.pixels[i]}));
  }
  return most;
}

// A small grey PNG whose IHDR (with a matching checksum) claims `width` x `height`, as a hostile
// encoder would write it.
inline std::vector<uint8_t> PngClaiming(uint32_t width, uint32_t height) {
  std::vector<uint8_t> png = EncodePng(TestImage(0, 1, 4, 4), 1);
  auto put = [&](size_t at, uint32_t v) {
    for (int k = 0; k < 4; ++k) png[at + k] = static_cast<uint8_t>(v >> (24 - 8 * k));
  };
  put(16, width);
  put(20, height);
  put(29, static_cast<uint32_t>(crc32(0, png.data() + 12, 17)));  // chunk type + IHDR data
  return png;
}

// Decodes every image of `split` from `threads` threads at once, `rounds` times each, each thread
// in its own order; returns how many decodes failed or differed from a first, serial pass.
inline int ConcurrentDecodeMismatches(const datasets::SplitReader& split, int threads, int rounds) {
  std::vector<std::vector<uint8_t>> expected;
  for (int64_t i = 0; i < split.size(); ++i) {
    absl::StatusOr<datasets::Image> image = split.Decode(i);
    expected.push_back(image.ok() ? image->pixels : std::vector<uint8_t>());
  }
  std::atomic<int> mismatches = 0;
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      for (int round = 0; round < rounds; ++round) {
        for (int64_t i = 0; i < split.size(); ++i) {
          const int64_t k = (i * (2 * t + 1) + round) % split.size();
          absl::StatusOr<datasets::Image> image = split.Decode(k);
          if (!image.ok() || image->pixels != expected[k]) ++mismatches;
        }
      }
    });
  }
  for (std::thread& t : pool) t.join();
  return mismatches;
}

enum class ArchiveKind { kTar, kTarGz, kZip };

struct ArchiveEntry {
  enum Type { kFile, kFolder, kSymlink, kHardlink, kDevice };
  std::string path;
  std::vector<uint8_t> bytes;
  Type type = kFile;
};

// Writes `entries` in order, as given (no path clean-up: tests write hostile names on purpose).
inline void WriteArchive(const std::string& path, ArchiveKind kind,
                         const std::vector<ArchiveEntry>& entries) {
  archive* a = archive_write_new();
  if (kind == ArchiveKind::kZip) {
    ASSERT_EQ(archive_write_set_format_zip(a), ARCHIVE_OK);
  } else {
    ASSERT_EQ(archive_write_set_format_pax_restricted(a), ARCHIVE_OK);
    if (kind == ArchiveKind::kTarGz) {
      ASSERT_EQ(archive_write_add_filter_gzip(a), ARCHIVE_OK);
    }
  }
  ASSERT_EQ(archive_write_open_filename(a, path.c_str()), ARCHIVE_OK) << archive_error_string(a);
  for (const ArchiveEntry& e : entries) {
    archive_entry* entry = archive_entry_new();
    archive_entry_set_pathname(entry, e.path.c_str());
    archive_entry_set_perm(entry, 0644);
    switch (e.type) {
      case ArchiveEntry::kFile:
        archive_entry_set_filetype(entry, AE_IFREG);
        archive_entry_set_size(entry, static_cast<la_int64_t>(e.bytes.size()));
        break;
      case ArchiveEntry::kFolder:
        archive_entry_set_filetype(entry, AE_IFDIR);
        break;
      case ArchiveEntry::kSymlink:
        archive_entry_set_filetype(entry, AE_IFLNK);
        archive_entry_set_symlink(entry, "../../etc/passwd");
        break;
      case ArchiveEntry::kHardlink:
        archive_entry_set_filetype(entry, AE_IFREG);
        archive_entry_set_hardlink(entry, "train/cat/0.png");
        break;
      case ArchiveEntry::kDevice:
        archive_entry_set_filetype(entry, AE_IFCHR);
        archive_entry_set_rdev(entry, 0x0101);
        break;
    }
    ASSERT_EQ(archive_write_header(a, entry), ARCHIVE_OK)
        << e.path << ": " << archive_error_string(a);
    if (e.type == ArchiveEntry::kFile && !e.bytes.empty()) {
      ASSERT_EQ(archive_write_data(a, e.bytes.data(), e.bytes.size()),
                static_cast<la_ssize_t>(e.bytes.size()));
    }
    archive_entry_free(entry);
  }
  ASSERT_EQ(archive_write_close(a), ARCHIVE_OK);
  archive_write_free(a);
}

inline void WriteFile(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  FILE* f = std::fopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr) << path;
  if (!bytes.empty()) {
    ASSERT_EQ(std::fwrite(bytes.data(), 1, bytes.size(), f), bytes.size());
  }
  std::fclose(f);
}

}  // namespace qnet::testing

#endif  // QNET_TESTS_DATASETS_IMAGE_FILES_H_
