// The input pipeline's image operations against torchvision.transforms.v2 (expected bytes written
// by torchvision_reference.py at test time) and against hand-computed cases.
#include "workers/engine/data/image_ops.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <unistd.h>

namespace qnet::engine {
namespace {

// The input every reference case starts from (torchvision_reference.py's pattern()).
torch::Tensor Pattern(int64_t c, int64_t h, int64_t w) {
  torch::Tensor k = torch::arange(c * h * w, torch::kLong);
  return (k * 37 + 11 + k.div(13, "floor") * 7).remainder(256).to(torch::kUInt8).view({c, h, w});
}

class TorchvisionReferenceTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(::testing::TempDir() + "/tvref-" + std::to_string(getpid()));
    std::filesystem::create_directories(*dir_);
    const std::string command =
        std::string(QNET_TEST_PYTHON) + " " + QNET_TORCHVISION_REFERENCE_PY + " " + *dir_;
    status_ = std::system(command.c_str());
  }
  static void TearDownTestSuite() {
    std::filesystem::remove_all(*dir_);
    delete dir_;
  }

  static torch::Tensor Expected(const std::string& name, std::vector<int64_t> shape) {
    std::ifstream in(*dir_ + "/" + name + ".bin", std::ios::binary);
    std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    torch::Tensor t = torch::empty(shape, torch::kUInt8);
    EXPECT_EQ(static_cast<int64_t>(bytes.size()), t.numel()) << name;
    if (static_cast<int64_t>(bytes.size()) == t.numel()) {
      std::memcpy(t.data_ptr<uint8_t>(), bytes.data(), bytes.size());
    }
    return t;
  }

  static std::string* dir_;
  static int status_;
};
std::string* TorchvisionReferenceTest::dir_ = nullptr;
int TorchvisionReferenceTest::status_ = 0;

TEST_F(TorchvisionReferenceTest, ResizeAndCenterCropMatchTorchvisionExactly) {
  ASSERT_EQ(status_, 0) << "torchvision_reference.py failed";
  struct Case {
    std::string name;
    int64_t c, h, w, size, crop_h, crop_w;
  };
  for (const Case& k :
       std::vector<Case>{{"down_3x37x53_r32_c32x32", 3, 37, 53, 32, 32, 32},
                         {"square_1x28x28_r14_c14x14", 1, 28, 28, 14, 14, 14},
                         {"up_3x20x30_r40_c40x40", 3, 20, 30, 40, 40, 40},
                         {"tall_3x300x200_r256_c224x224", 3, 300, 200, 256, 224, 224},
                         {"odd_anchor_3x50x51_r50_c47x46", 3, 50, 51, 50, 47, 46},
                         {"pad_1x7x9_r16_c20x20", 1, 7, 9, 16, 20, 20}}) {
    SCOPED_TRACE(k.name);
    const torch::Tensor got = ResizeCenterCrop(Pattern(k.c, k.h, k.w), k.size, k.crop_h, k.crop_w);
    const torch::Tensor want = Expected(k.name, {k.c, k.crop_h, k.crop_w});
    ASSERT_EQ(got.sizes(), want.sizes());
    EXPECT_TRUE(torch::equal(got.contiguous(), want))
        << "max difference "
        << (got.to(torch::kInt) - want.to(torch::kInt)).abs().max().item<int>();
  }
}

TEST_F(TorchvisionReferenceTest, CropThenResizeMatchesResizedCrop) {
  ASSERT_EQ(status_, 0) << "torchvision_reference.py failed";
  const torch::Tensor image = Pattern(3, 40, 48);
  const torch::Tensor got = ResizeImage(image.slice(1, 5, 25).slice(2, 7, 32).contiguous(), 32, 32);
  EXPECT_TRUE(
      torch::equal(got, Expected("resized_crop_3x40x48_box5_7_20_25_to32x32", {3, 32, 32})));
}

TEST(ImageOpsTest, ResizedSizeKeepsTheAspectAndTruncates) {
  EXPECT_EQ(ResizedSize(300, 200, 224), (std::pair<int64_t, int64_t>{336, 224}));
  EXPECT_EQ(ResizedSize(200, 300, 224), (std::pair<int64_t, int64_t>{224, 336}));
  EXPECT_EQ(ResizedSize(7, 9, 16), (std::pair<int64_t, int64_t>{16, 20}));  // 20.57 -> 20
  EXPECT_EQ(ResizedSize(28, 28, 32), (std::pair<int64_t, int64_t>{32, 32}));
}

TEST(ImageOpsTest, CenterCropAnchorRoundsHalfToEven) {
  const torch::Tensor image = torch::arange(6 * 7, torch::kLong).view({1, 6, 7});
  // (6 - 5) / 2 = 0.5 -> 0; (7 - 4) / 2 = 1.5 -> 2, as Python's round().
  const torch::Tensor crop = CenterCrop(image, 5, 4);
  EXPECT_EQ(crop[0][0][0].item<int64_t>(), 0 * 7 + 2);
  // Larger than the image: zero padding, split with the extra pixel after.
  const torch::Tensor padded = CenterCrop(image, 9, 7);
  EXPECT_EQ(padded.sizes(), (std::vector<int64_t>{1, 9, 7}));
  EXPECT_EQ(padded[0][0].sum().item<int64_t>(), 0);
  EXPECT_EQ(padded[0][1][0].item<int64_t>(), 0);   // first image row
  EXPECT_EQ(padded[0][6][6].item<int64_t>(), 41);  // last image pixel
  EXPECT_EQ(padded[0][7].sum().item<int64_t>(), 0);
  EXPECT_EQ(padded[0][8].sum().item<int64_t>(), 0);
}

TEST(ImageOpsTest, OneChannelRepeatsAndColourIntoOneChannelIsRefused) {
  const torch::Tensor grey = Pattern(1, 4, 5);
  absl::StatusOr<torch::Tensor> rgb = AdaptChannels(grey, 3);
  ASSERT_TRUE(rgb.ok());
  EXPECT_EQ(rgb->sizes(), (std::vector<int64_t>{3, 4, 5}));
  for (int c = 0; c < 3; ++c) EXPECT_TRUE(torch::equal((*rgb)[c], grey[0]));
  absl::StatusOr<torch::Tensor> refused = AdaptChannels(Pattern(3, 4, 5), 1);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(refused.status().message(),
            "a 3-channel image cannot feed a model that takes 1 channel(s)");
}

TEST(ImageOpsTest, RandomResizedCropBoxesFollowScaleAndRatio) {
  SampleRandom random(7);
  std::set<std::pair<int64_t, int64_t>> sizes;
  for (int i = 0; i < 500; ++i) {
    const CropBox b = RandomResizedCropBox(64, 80, 0.25, 1.0, random);
    ASSERT_GT(b.height, 0);
    ASSERT_GE(b.top, 0);
    ASSERT_LE(b.top + b.height, 64);
    ASSERT_LE(b.left + b.width, 80);
    const double area = static_cast<double>(b.height * b.width) / (64.0 * 80.0);
    EXPECT_GE(area, 0.25 * 0.85) << b.height << "x" << b.width;
    const double ratio = static_cast<double>(b.width) / static_cast<double>(b.height);
    EXPECT_GE(ratio, 0.75 * 0.85);
    EXPECT_LE(ratio, 4.0 / 3.0 / 0.85);
    sizes.insert({b.height, b.width});
  }
  EXPECT_GT(sizes.size(), 50u);
  // No window fits the ratio range in a 1x100 strip: the clamped central crop.
  SampleRandom strip(1);
  const CropBox b = RandomResizedCropBox(1, 100, 0.9, 1.0, strip);
  EXPECT_EQ(b.height, 1);
  EXPECT_EQ(b.width, 1);
  EXPECT_EQ(b.left, 49);
}

TEST(ImageOpsTest, AugmentationDependsOnTheSampleSeedOnly) {
  const torch::Tensor image = Pattern(3, 16, 16);
  const Augmentation rrc{.crop = Crop::kRandomResized, .scale_min = 0.25, .flip = true};
  EXPECT_TRUE(torch::equal(AugmentSample(image, rrc, 11), AugmentSample(image, rrc, 11)));
  int changed = 0;
  for (uint64_t seed = 0; seed < 20; ++seed) {
    const torch::Tensor out = AugmentSample(image, rrc, seed);
    EXPECT_EQ(out.sizes(), image.sizes());
    EXPECT_EQ(out.scalar_type(), torch::kUInt8);
    changed += torch::equal(out, image) ? 0 : 1;
  }
  EXPECT_GT(changed, 15);
  const Augmentation flip_only{.flip = true};
  int flipped = 0;
  for (uint64_t seed = 0; seed < 40; ++seed) {
    const torch::Tensor out = AugmentSample(image, flip_only, seed);
    if (torch::equal(out, image.flip({2}))) {
      ++flipped;
    } else {
      EXPECT_TRUE(torch::equal(out, image));
    }
  }
  EXPECT_GT(flipped, 8);
  EXPECT_LT(flipped, 32);
  EXPECT_TRUE(torch::equal(AugmentSample(image, {}, 3), image));
}

}  // namespace
}  // namespace qnet::engine
