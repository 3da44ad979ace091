// Format "imagefolder" and the layout rules it shares with "archive" (datasets/image_tree.h):
// classes and labels, optional test split, channel promotion, typical shape, and every layout
// mistake refused with the entry's name.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "datasets/dataset_format.h"
#include "tests/datasets/dataset_files.h"
#include "tests/datasets/image_files.h"

namespace qnet::datasets {
namespace {

using ::qnet::testing::EncodeJpeg;
using ::qnet::testing::EncodePng;
using ::qnet::testing::MaxDifference;
using ::qnet::testing::TestImage;
using ::qnet::testing::WriteFile;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

class ImageFolderTest : public qnet::testing::DatasetDirTest {
 protected:
  const DatasetFormat& format() const { return *FindDatasetFormat("imagefolder"); }

  // train/cat: two grey PNGs 6x5 (ids 0, 1); train/dog: an RGBA PNG 6x5 (id 2) and an RGB JPEG
  // 8x4 (id 3); test/dog: a grey PNG 6x5 (id 4). `root` is "" or "myset/".
  void WriteMixed(const std::string& root = "") {
    WriteFile(Path(root + "train/cat/0.png"), EncodePng(TestImage(0, 1, 5, 6), 1));
    WriteFile(Path(root + "train/cat/1.png"), EncodePng(TestImage(1, 1, 5, 6), 2));
    WriteFile(Path(root + "train/dog/2.png"), EncodePng(TestImage(2, 3, 5, 6), 4));
    WriteFile(Path(root + "train/dog/3.jpg"), EncodeJpeg(TestImage(3, 3, 4, 8)));
    WriteFile(Path(root + "test/dog/4.png"), EncodePng(TestImage(4, 1, 5, 6), 1));
  }

  absl::Status InspectError() const { return format().Inspect(dir_).status(); }
};

TEST_F(ImageFolderTest, ClassesLabelsAndPromotionToColour) {
  WriteMixed();
  ASSERT_TRUE(format().Detect(dir_));
  absl::StatusOr<DatasetSummary> summary = format().Inspect(dir_);
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_THAT(summary->class_names, ElementsAre("cat", "dog"));
  EXPECT_EQ(summary->num_classes, 2);
  EXPECT_EQ(summary->train_images, 4);
  EXPECT_EQ(summary->test_images, 1);
  EXPECT_EQ(summary->shape, (ImageShape{3, 5, 6}));  // one colour image makes all colour
  EXPECT_THAT(summary->files, ElementsAre("train/cat/0.png", "train/cat/1.png", "train/dog/2.png",
                                          "train/dog/3.jpg", "test/dog/4.png"));

  absl::StatusOr<DatasetReader> reader = format().Open(dir_);
  ASSERT_TRUE(reader.ok()) << reader.status();
  EXPECT_THAT(reader->class_names, ElementsAre("cat", "dog"));
  EXPECT_FALSE(reader->fixed_shape);
  ASSERT_EQ(reader->train->size(), 4);
  ASSERT_NE(reader->test, nullptr);
  ASSERT_EQ(reader->test->size(), 1);
  EXPECT_EQ(reader->train->source(3), "train/dog/3.jpg");
  EXPECT_EQ(reader->train->label(0), 0);
  EXPECT_EQ(reader->train->label(3), 1);
  EXPECT_EQ(*reader->train->Shape(3), (ImageShape{3, 4, 8}));
  absl::StatusOr<Image> grey = reader->train->Decode(1);
  ASSERT_TRUE(grey.ok()) << grey.status();
  EXPECT_EQ(grey->shape, (ImageShape{3, 5, 6}));
  for (int c = 0; c < 3; ++c)
    EXPECT_EQ(qnet::testing::At(*grey, c, 4, 5), TestImage(1, 1, 5, 6).pixels.back());
  EXPECT_EQ(MaxDifference(reader->train->Decode(2), TestImage(2, 3, 5, 6)), 0);
  EXPECT_LE(MaxDifference(reader->train->Decode(3), TestImage(3, 3, 4, 8)), 8);
  EXPECT_EQ(reader->test->label(0), 1);
}

TEST_F(ImageFolderTest, GreyStaysGreyAndValIsTheTestSplit) {
  WriteFile(Path("train/a/0.png"), EncodePng(TestImage(0, 1, 5, 6), 1));
  WriteFile(Path("train/b/1.jpg"), EncodeJpeg(TestImage(1, 1, 5, 6)));
  WriteFile(Path("val/b/2.png"), EncodePng(TestImage(2, 1, 5, 6), 1));
  absl::StatusOr<DatasetReader> reader = format().Open(dir_);
  ASSERT_TRUE(reader.ok()) << reader.status();
  EXPECT_TRUE(reader->fixed_shape);
  ASSERT_NE(reader->test, nullptr);
  EXPECT_EQ(reader->test->source(0), "val/b/2.png");
  EXPECT_EQ(reader->test->label(0), 1);
  EXPECT_EQ(MaxDifference(reader->test->Decode(0), TestImage(2, 1, 5, 6)), 0);
  // One shape everywhere: Read can hold it as arrays.
  absl::StatusOr<RawDataset> data = format().Read(dir_);
  ASSERT_TRUE(data.ok()) << data.status();
  EXPECT_EQ(data->shape(), (ImageShape{1, 5, 6}));
  EXPECT_THAT(data->train.labels, ElementsAre(0, 1));
  EXPECT_EQ(data->test.size(), 1);
}

TEST_F(ImageFolderTest, NoTestSplitAndACommonTopFolder) {
  WriteFile(Path("myset/train/a/0.png"), EncodePng(TestImage(0, 3, 5, 6), 3));
  WriteFile(Path("myset/train/a/nested/1.png"), EncodePng(TestImage(1, 3, 5, 6), 3));
  WriteFile(Path("myset/train/a/.DS_Store"), {'x'});
  WriteFile(Path("myset/train/.hidden/2.png"), {'x'});
  ASSERT_TRUE(format().Detect(dir_));
  absl::StatusOr<DatasetSummary> summary = format().Inspect(dir_);
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_EQ(summary->train_images, 2);
  EXPECT_EQ(summary->test_images, 0);
  absl::StatusOr<DatasetReader> reader = format().Open(dir_);
  ASSERT_TRUE(reader.ok()) << reader.status();
  EXPECT_EQ(reader->test, nullptr);
  EXPECT_EQ(reader->train->source(1), "myset/train/a/nested/1.png");
  absl::StatusOr<RawDataset> data = format().Read(dir_);
  ASSERT_TRUE(data.ok()) << data.status();
  EXPECT_EQ(data->test.size(), 0);
}

TEST_F(ImageFolderTest, TypicalShapeIsTheMostCommon) {
  WriteFile(Path("train/a/0.png"), EncodePng(TestImage(0, 1, 7, 3), 1));
  WriteFile(Path("train/a/1.png"), EncodePng(TestImage(0, 1, 4, 4), 1));
  WriteFile(Path("train/b/2.png"), EncodePng(TestImage(0, 1, 7, 3), 1));
  absl::StatusOr<DatasetSummary> summary = format().Inspect(dir_);
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_EQ(summary->shape, (ImageShape{1, 7, 3}));
  absl::Status read = format().Read(dir_).status();
  EXPECT_EQ(read.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(read.message(), HasSubstr("images differ in size"));
}

TEST_F(ImageFolderTest, LayoutMistakesNameTheEntry) {
  const std::vector<uint8_t> png = EncodePng(TestImage(0, 1, 5, 6), 1);
  struct Case {
    std::vector<std::string> files, folders;
    std::string message;
  };
  const Case cases[] = {
      {{"train/a/0.png"}, {"train/b"}, "/train/b/: empty class folder"},
      {{"training/a/0.png"}, {}, ": missing the train split: no train/ folder"},
      {{"train/0.png"}, {}, "/train/0.png: not inside a class folder"},
      {{"train/a/0.png", "test/zebra/1.png"}, {}, "/test/zebra/: class not in train/ (classes: a)"},
      {{"train/a/0.png", "test/a/1.png", "val/a/2.png"}, {}, "/: has both test/ and val/"},
      {{"train/a/0.png"}, {"test"}, "/test/: holds no class folders"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.message);
    Reset();
    for (const std::string& f : c.files) WriteFile(Path(f), png);
    for (const std::string& f : c.folders) std::filesystem::create_directories(Path(f));
    const absl::Status inspect = InspectError(), open = format().Open(dir_).status();
    EXPECT_EQ(inspect.code(), absl::StatusCode::kInvalidArgument) << inspect;
    EXPECT_THAT(inspect.message(), HasSubstr(dir_ + c.message));
    EXPECT_EQ(open, inspect);
  }
}

TEST_F(ImageFolderTest, BadImagesNameTheFile) {
  const std::vector<uint8_t> png = EncodePng(TestImage(0, 1, 5, 6), 1);
  WriteFile(Path("train/a/0.png"), png);
  WriteFile(Path("train/a/notes.txt"), {'h', 'i'});
  EXPECT_THAT(InspectError().message(), HasSubstr(dir_ + "/train/a/notes.txt: not a JPEG or PNG"));
  std::filesystem::remove(Path("train/a/notes.txt"));
  WriteFile(Path("train/a/cut.png"), std::vector<uint8_t>(png.begin(), png.begin() + 20));
  EXPECT_THAT(InspectError().message(),
              HasSubstr(dir_ + "/train/a/cut.png: corrupt or truncated PNG"));

  // A header that is fine but pixel data that is not shows at decode time, named.
  std::filesystem::remove(Path("train/a/cut.png"));
  WriteFile(Path("train/a/tail.png"), std::vector<uint8_t>(png.begin(), png.end() - 30));
  absl::StatusOr<DatasetReader> reader = format().Open(dir_);
  ASSERT_TRUE(reader.ok()) << reader.status();
  absl::Status decode = reader->train->Decode(1).status();
  EXPECT_EQ(decode.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(decode.message(), HasSubstr(dir_ + "/train/a/tail.png: corrupt or truncated PNG"));
}

TEST_F(ImageFolderTest, ConcurrentDecodesAgree) {
  for (int i = 0; i < 24; ++i) {
    const std::string name = absl::StrCat("train/c", i % 3, "/", i);
    if (i % 2 == 0) {
      WriteFile(Path(name + ".png"), EncodePng(TestImage(i, 3, 9, 11), 3));
    } else {
      WriteFile(Path(name + ".jpg"), EncodeJpeg(TestImage(i, 3, 9, 11)));
    }
  }
  absl::StatusOr<DatasetReader> reader = format().Open(dir_);
  ASSERT_TRUE(reader.ok()) << reader.status();
  EXPECT_EQ(qnet::testing::ConcurrentDecodeMismatches(*reader->train, 4, 5), 0);
}

}  // namespace
}  // namespace qnet::datasets
