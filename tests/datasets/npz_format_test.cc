// Format "npz" on files NumPy itself wrote (npz_fixtures.py): the three layouts, label dtypes,
// compressed and uncompressed, detection by content, and each malformed file refused by name.
#include <cstdlib>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "datasets/dataset_format.h"
#include "tests/datasets/dataset_files.h"

namespace qnet::datasets {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

// Pixel (n, c, h, w) as npz_fixtures.py writes it (it indexes NHWC).
uint8_t Pixel(int64_t n, int64_t c, int64_t h, int64_t w) {
  return static_cast<uint8_t>((n * 7 + h * 5 + w * 3 + c * 11) % 256);
}

class NpzFormatTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new qnet::testing::TempFolder();
    const std::string command =
        absl::StrCat(QNET_TEST_PYTHON, " ", QNET_NPZ_FIXTURES, " ", dir_->path());
    ASSERT_EQ(std::system(command.c_str()), 0) << command;
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  static std::string Path(const std::string& name) { return dir_->path() + "/" + name; }
  static const DatasetFormat& format() { return *FindDatasetFormat("npz"); }

  static qnet::testing::TempFolder* dir_;
};
qnet::testing::TempFolder* NpzFormatTest::dir_ = nullptr;

TEST_F(NpzFormatTest, LayoutsAndLabelTypesReadAlike) {
  for (const auto& [file, channels] : {std::pair{"nhwc.npz", 3}, std::pair{"nchw.npz", 3},
                                       std::pair{"nhw.npz", 1}, std::pair{"compressed.npz", 1}}) {
    SCOPED_TRACE(file);
    ASSERT_TRUE(format().Detect(Path(file)));
    absl::StatusOr<DatasetSummary> summary = format().Inspect(Path(file));
    ASSERT_TRUE(summary.ok()) << summary.status();
    EXPECT_EQ(summary->shape, (ImageShape{channels, 5, 4}));
    EXPECT_EQ(summary->num_classes, 4);
    EXPECT_THAT(summary->class_names, ElementsAre("0", "1", "2", "3"));
    EXPECT_EQ(summary->train_images, 6);
    EXPECT_EQ(summary->test_images, 4);
    EXPECT_THAT(summary->files, ElementsAre(file));

    absl::StatusOr<DatasetReader> reader = format().Open(Path(file));
    ASSERT_TRUE(reader.ok()) << reader.status();
    EXPECT_TRUE(reader->fixed_shape);
    EXPECT_EQ(reader->num_classes, 4);
    ASSERT_NE(reader->test, nullptr);
    for (const auto& [split, shift] :
         {std::pair{reader->train.get(), 0}, std::pair{reader->test.get(), 1}}) {
      for (int64_t n = 0; n < split->size(); ++n) {
        EXPECT_EQ(split->label(n), (n + shift) % 4);
        absl::StatusOr<Image> image = split->Decode(n);
        ASSERT_TRUE(image.ok()) << image.status();
        ASSERT_EQ(image->shape, (ImageShape{channels, 5, 4}));
        int wrong = 0;
        for (int64_t c = 0; c < channels; ++c) {
          for (int64_t h = 0; h < 5; ++h) {
            for (int64_t w = 0; w < 4; ++w) {
              wrong += image->pixels[(c * 5 + h) * 4 + w] != Pixel(n, c, h, w);
            }
          }
        }
        EXPECT_EQ(wrong, 0) << split->source(n);
      }
    }
  }
}

TEST_F(NpzFormatTest, WithoutTestArraysThereIsNoTestSplit) {
  absl::StatusOr<DatasetSummary> summary = format().Inspect(Path("no_test.npz"));
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_EQ(summary->test_images, 0);
  absl::StatusOr<DatasetReader> reader = format().Open(Path("no_test.npz"));
  ASSERT_TRUE(reader.ok()) << reader.status();
  EXPECT_EQ(reader->test, nullptr);
  EXPECT_EQ(reader->train->size(), 6);
}

TEST_F(NpzFormatTest, AnUploadedBlobIsToldByContent) {
  // A folder holding one extension-less file, as a worker downloads it.
  EXPECT_TRUE(format().Detect(Path("blob")));
  EXPECT_TRUE(format().Detect(Path("blob/sha256-0123")));
  absl::StatusOr<const DatasetFormat*> detected = DetectDatasetFormat(Path("blob"));
  ASSERT_TRUE(detected.ok()) << detected.status();
  EXPECT_EQ((*detected)->name(), "npz");
  absl::StatusOr<DatasetSummary> summary = format().Inspect(Path("blob"));
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_THAT(summary->files, ElementsAre("sha256-0123"));
  // A zip of anything else is not an npz; a folder of several files is not an upload.
  EXPECT_FALSE(format().Detect(Path("not_npz.zip")));
  EXPECT_FALSE(format().Detect(dir_->path()));
}

TEST_F(NpzFormatTest, MalformedFilesNameTheArrayAndTheProblem) {
  const std::pair<const char*, const char*> cases[] = {
      {"fortran.npz", "fortran.npz/x_train.npy: Fortran-ordered array"},
      {"float_images.npz", "float_images.npz/x_train.npy: images must be uint8, not '<f4'"},
      {"object_labels.npz", "object_labels.npz/y_train.npy: dtype '|O' is not an integer type"},
      {"float_labels.npz", "float_labels.npz/y_train.npy: dtype '<f8' is not an integer type"},
      {"mismatch.npz", "mismatch.npz/y_train.npy: count mismatch: 5 labels for 6 images"},
      {"negative.npz", "negative.npz/y_train.npy: label -1 at index 0 is out of range"},
      {"test_label_out_of_range.npz",
       "test_label_out_of_range.npz/y_test.npy: label 5 at index 0 is out of range for 4 classes"},
      {"bad_layout.npz", "bad_layout.npz/x_train.npy: shape (6, 5, 4, 5) is not NHW, NHWC or NCHW"},
      {"split_shapes.npz", "train images are [3, 5, 4] but test images are [3, 4, 4]"},
      {"x_test_only.npz", "has one of x_test.npy and y_test.npy but not the other"},
      {"no_train.npz",
       "not an npz dataset: it needs x_train.npy and y_train.npy (found: "
       "x_test.npy, y_test.npy)"},
      {"not_npz.zip",
       "not an npz dataset: it needs x_train.npy and y_train.npy (found: "
       "readme.txt)"},
      {"truncated.npz", "truncated.npz: damaged or truncated"},
      {"text.npz", "text.npz: not an .npz file (no zip signature)"},
      {"extra_key.npz", "extra_key.npz/x_train.npy: .npy header has the unexpected key 'x'"},
  };
  for (const auto& [file, expected] : cases) {
    SCOPED_TRACE(file);
    const absl::Status inspect = format().Inspect(Path(file)).status();
    const absl::Status read = format().Read(Path(file)).status();
    for (const absl::Status& s : {inspect, read}) {
      EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
      EXPECT_THAT(s.message(), HasSubstr(expected));
    }
  }
}

}  // namespace
}  // namespace qnet::datasets
