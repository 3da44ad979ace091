// The shared image decoder: PNG colour types and bit depths decode losslessly, JPEG closely, grey
// promotes to three channels on request, and every damaged or oversized header is refused with
// the file's name before anything is allocated.
#include "datasets/image_decoder.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/datasets/image_files.h"

namespace qnet::datasets {
namespace {

using ::qnet::testing::EncodeJpeg;
using ::qnet::testing::EncodePng;
using ::qnet::testing::MaxDifference;
using ::qnet::testing::PngClaiming;
using ::qnet::testing::TestImage;
using ::testing::HasSubstr;

// Grey as three equal planes.
Image Replicated(const Image& grey) {
  Image rgb{{3, grey.shape.height, grey.shape.width}, {}};
  for (int c = 0; c < 3; ++c)
    rgb.pixels.insert(rgb.pixels.end(), grey.pixels.begin(), grey.pixels.end());
  return rgb;
}

TEST(ImageDecoderTest, PngColourTypesDecodeLosslessly) {
  for (const auto& [height, width] : {std::pair{1, 1}, std::pair{5, 7}, std::pair{17, 33}}) {
    const Image grey = TestImage(1, 1, height, width), rgb = TestImage(2, 3, height, width);
    struct Case {
      std::vector<uint8_t> png;
      const Image* expected;
      const char* what;
    };
    const Case cases[] = {{EncodePng(grey, 1), &grey, "grey"},
                          {EncodePng(grey, 2), &grey, "grey+alpha"},
                          {EncodePng(grey, 1, /*sixteen_bit=*/true), &grey, "grey 16-bit"},
                          {EncodePng(rgb, 3), &rgb, "RGB"},
                          {EncodePng(rgb, 4), &rgb, "RGBA"}};
    for (const Case& c : cases) {
      SCOPED_TRACE(::testing::Message() << c.what << " " << width << "x" << height);
      absl::StatusOr<ImageHeader> header = ReadImageHeader("a.png", c.png);
      ASSERT_TRUE(header.ok()) << header.status();
      EXPECT_EQ(header->type, ImageType::kPng);
      EXPECT_EQ(header->shape, c.expected->shape);
      absl::StatusOr<Image> image = DecodeImage("a.png", c.png, c.expected->shape.channels);
      ASSERT_TRUE(image.ok()) << image.status();
      EXPECT_EQ(MaxDifference(*image, *c.expected), 0);
      if (c.expected == &grey) {
        absl::StatusOr<Image> promoted = DecodeImage("a.png", c.png, 3);
        ASSERT_TRUE(promoted.ok()) << promoted.status();
        EXPECT_EQ(MaxDifference(*promoted, Replicated(grey)), 0);
      } else {
        EXPECT_THAT(DecodeImage("a.png", c.png, 1).status().message(),
                    HasSubstr("a.png: is a colour image but the dataset was opened as grey"));
      }
    }
  }
}

TEST(ImageDecoderTest, JpegDecodesCloselyBaselineAndProgressive) {
  for (bool progressive : {false, true}) {
    for (const Image& original : {TestImage(3, 1, 9, 13), TestImage(4, 3, 9, 13),
                                  TestImage(0, 3, 32, 32), TestImage(1, 3, 1, 1)}) {
      SCOPED_TRACE(::testing::Message() << "progressive " << progressive << " channels "
                                        << original.shape.channels << " " << original.shape.width);
      const std::vector<uint8_t> jpeg = EncodeJpeg(original, progressive);
      absl::StatusOr<ImageHeader> header = ReadImageHeader("a.jpg", jpeg);
      ASSERT_TRUE(header.ok()) << header.status();
      EXPECT_EQ(header->type, ImageType::kJpeg);
      EXPECT_EQ(header->shape, original.shape);
      absl::StatusOr<Image> image = DecodeImage("a.jpg", jpeg, original.shape.channels);
      ASSERT_TRUE(image.ok()) << image.status();
      EXPECT_LE(MaxDifference(*image, original), 8);
      if (original.shape.channels == 1) {
        absl::StatusOr<Image> promoted = DecodeImage("a.jpg", jpeg, 3);
        ASSERT_TRUE(promoted.ok()) << promoted.status();
        EXPECT_EQ(MaxDifference(*promoted, Replicated(*image)), 0);
      }
    }
  }
}

TEST(ImageDecoderTest, HeaderFromAPrefix) {
  const std::vector<uint8_t> png = EncodePng(TestImage(0, 3, 30, 20), 3);
  absl::StatusOr<ImageHeader> header =
      ReadImageHeader("p.png", std::span<const uint8_t>(png).first(40));
  ASSERT_TRUE(header.ok()) << header.status();
  EXPECT_EQ(header->shape, (ImageShape{3, 30, 20}));
  // A JPEG prefix that stops before the frame header says it is truncated.
  const std::vector<uint8_t> jpeg = EncodeJpeg(TestImage(0, 3, 30, 20));
  absl::Status cut = ReadImageHeader("j.jpg", std::span<const uint8_t>(jpeg).first(30)).status();
  EXPECT_EQ(cut.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(cut.message(), HasSubstr("j.jpg: corrupt or truncated JPEG"));
}

// Rewrites a JPEG's frame header size (SOF0: FF C0, length, precision, height, width).
std::vector<uint8_t> JpegClaiming(uint16_t width, uint16_t height) {
  std::vector<uint8_t> jpeg = EncodeJpeg(TestImage(0, 3, 8, 8));
  for (size_t i = 2; i + 9 < jpeg.size(); ++i) {
    if (jpeg[i] == 0xff && jpeg[i + 1] == 0xc0) {
      jpeg[i + 5] = height >> 8, jpeg[i + 6] = height & 0xff;
      jpeg[i + 7] = width >> 8, jpeg[i + 8] = width & 0xff;
      break;
    }
  }
  return jpeg;
}

TEST(ImageDecoderTest, OversizedHeadersAreRefusedBeforeDecoding) {
  for (const auto& [name, bytes, claim] :
       {std::tuple{"big.png", PngClaiming(100000, 100000), "100000x100000"},
        std::tuple{"wide.png", PngClaiming(16385, 1), "16385x1"},
        std::tuple{"many.png", PngClaiming(16384, 16385), "16384x16385"},
        std::tuple{"big.jpg", JpegClaiming(65000, 65000), "65000x65000"}}) {
    SCOPED_TRACE(name);
    for (const absl::Status& s :
         {ReadImageHeader(name, bytes).status(), DecodeImage(name, bytes, 3).status()}) {
      EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
      EXPECT_THAT(s.message(), HasSubstr(absl::StrCat(name, ": header declares ", claim,
                                                      " pixels, more than the limit")));
    }
  }
  // The largest allowed size passes the header check (its pixels are not there).
  EXPECT_TRUE(ReadImageHeader("edge.png", PngClaiming(16384, 16384)).ok());
}

TEST(ImageDecoderTest, DamagedFilesNameTheFileAndTheProblem) {
  const std::vector<uint8_t> png = EncodePng(TestImage(0, 3, 16, 16), 3);
  const std::vector<uint8_t> jpeg = EncodeJpeg(TestImage(0, 3, 16, 16));
  std::vector<uint8_t> bad_crc = png;
  bad_crc[bad_crc.size() - 20] ^= 0x55;  // inside IDAT
  struct Case {
    const char* name;
    std::vector<uint8_t> bytes;
    const char* problem;
  };
  const Case cases[] = {
      {"half.png", std::vector<uint8_t>(png.begin(), png.begin() + png.size() / 2),
       "corrupt or truncated PNG"},
      {"crc.png", bad_crc, "corrupt or truncated PNG"},
      {"half.jpg", std::vector<uint8_t>(jpeg.begin(), jpeg.begin() + jpeg.size() / 2),
       "corrupt or truncated JPEG"},
      {"notes.txt", {'h', 'e', 'l', 'l', 'o'}, "not a JPEG or PNG image"},
      {"empty.png", {}, "not a JPEG or PNG image"},
  };
  for (const Case& c : cases) {
    absl::Status s = DecodeImage(c.name, c.bytes, 3).status();
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << c.name << ": " << s;
    EXPECT_THAT(s.message(), HasSubstr(absl::StrCat(c.name, ": ", c.problem)));
  }
}

}  // namespace
}  // namespace qnet::datasets
