// Format "archive": the image layout inside a tar, tar.gz or zip, told by content (uploads have no
// extension), read without extracting, with hostile entries (.., absolute paths, links, devices,
// compression bombs) and damaged archives refused by name.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "datasets/dataset_format.h"
#include "tests/datasets/dataset_files.h"
#include "tests/datasets/image_files.h"

namespace qnet::datasets {
namespace {

using ::qnet::testing::ArchiveEntry;
using ::qnet::testing::ArchiveKind;
using ::qnet::testing::EncodeJpeg;
using ::qnet::testing::EncodePng;
using ::qnet::testing::MaxDifference;
using ::qnet::testing::TestImage;
using ::qnet::testing::WriteArchive;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr ArchiveKind kKinds[] = {ArchiveKind::kTar, ArchiveKind::kTarGz, ArchiveKind::kZip};

class ArchiveFormatTest : public qnet::testing::DatasetDirTest {
 protected:
  const DatasetFormat& format() const { return *FindDatasetFormat("archive"); }

  // cat: grey PNG 0 (5x6) and RGB JPEG 1 (5x6); dog: RGBA PNG 2 (5x6); test/dog: grey PNG 3.
  static std::vector<ArchiveEntry> Dataset(const std::string& root) {
    return {{root + "train/", {}, ArchiveEntry::kFolder},
            {root + "train/cat/0.png", EncodePng(TestImage(0, 1, 5, 6), 1)},
            {root + "train/cat/1.jpg", EncodeJpeg(TestImage(1, 3, 5, 6))},
            {root + "train/dog/2.png", EncodePng(TestImage(2, 3, 5, 6), 4)},
            {root + "test/dog/3.png", EncodePng(TestImage(3, 1, 5, 6), 1)},
            {root + "README.txt", {'h', 'i'}}};
  }

  // `entries` written as `kind` into a file without extension; returns its path.
  std::string Write(ArchiveKind kind, const std::vector<ArchiveEntry>& entries,
                    const std::string& name = "blob") {
    const std::string path = Path(name);
    WriteArchive(path, kind, entries);
    return path;
  }
};

TEST_F(ArchiveFormatTest, TarTarGzAndZipReadAlike) {
  for (ArchiveKind kind : kKinds) {
    for (const std::string root : {"", "./", "myset/"}) {
      SCOPED_TRACE(::testing::Message() << static_cast<int>(kind) << " root '" << root << "'");
      Reset();
      const std::string file = Write(kind, Dataset(root));
      // The file itself, or the folder holding only it (as a worker downloads an upload).
      for (const std::string& path : {file, dir_}) {
        ASSERT_TRUE(format().Detect(path));
        absl::StatusOr<const DatasetFormat*> detected = DetectDatasetFormat(path);
        ASSERT_TRUE(detected.ok()) << detected.status();
        EXPECT_EQ((*detected)->name(), "archive");
        absl::StatusOr<DatasetSummary> summary = format().Inspect(path);
        ASSERT_TRUE(summary.ok()) << summary.status();
        EXPECT_THAT(summary->class_names, ElementsAre("cat", "dog"));
        EXPECT_EQ(summary->train_images, 3);
        EXPECT_EQ(summary->test_images, 1);
        EXPECT_EQ(summary->shape, (ImageShape{3, 5, 6}));
        EXPECT_THAT(summary->files, ElementsAre("blob"));
      }
      absl::StatusOr<DatasetReader> reader = format().Open(dir_);
      ASSERT_TRUE(reader.ok()) << reader.status();
      EXPECT_TRUE(reader->fixed_shape);
      ASSERT_EQ(reader->train->size(), 3);
      ASSERT_NE(reader->test, nullptr);
      const std::string top = root == "myset/" ? root : "";
      EXPECT_EQ(reader->train->source(1), top + "train/cat/1.jpg");
      EXPECT_THAT(std::vector<int64_t>({reader->train->label(0), reader->train->label(1),
                                        reader->train->label(2), reader->test->label(0)}),
                  ElementsAre(0, 0, 1, 1));
      EXPECT_LE(MaxDifference(reader->train->Decode(1), TestImage(1, 3, 5, 6)), 8);
      EXPECT_EQ(MaxDifference(reader->train->Decode(2), TestImage(2, 3, 5, 6)), 0);
      absl::StatusOr<Image> grey = reader->test->Decode(0);
      ASSERT_TRUE(grey.ok()) << grey.status();
      EXPECT_EQ(grey->shape, (ImageShape{3, 5, 6}));  // promoted: the dataset has colour images
      absl::StatusOr<RawDataset> data = format().Read(file);
      ASSERT_TRUE(data.ok()) << data.status();
      EXPECT_EQ(data->train.size(), 3);
    }
  }
}

TEST_F(ArchiveFormatTest, HostileEntriesAreRefusedByName) {
  const std::vector<uint8_t> png = EncodePng(TestImage(0, 1, 5, 6), 1);
  struct Case {
    ArchiveEntry entry;
    std::string message;
  };
  const Case cases[] = {
      {{"../evil.png", png}, "/../evil.png: path leaves the archive"},
      {{"train/cat/../../../evil.png", png}, "/train/cat/../../../evil.png: path leaves the"},
      {{"/etc/evil.png", png}, "//etc/evil.png: absolute path in the archive"},
      {{"train/cat/link.png", {}, ArchiveEntry::kSymlink}, "/train/cat/link.png: links are not"},
      {{"train/cat/hard.png", {}, ArchiveEntry::kHardlink}, "/train/cat/hard.png: links are not"},
      {{"train/cat/dev", {}, ArchiveEntry::kDevice}, "/train/cat/dev: device or special file"},
  };
  for (ArchiveKind kind : kKinds) {
    for (const Case& c : cases) {
      // zip has no hard links or devices.
      if (kind == ArchiveKind::kZip && c.entry.type >= ArchiveEntry::kHardlink) continue;
      SCOPED_TRACE(::testing::Message() << static_cast<int>(kind) << " " << c.entry.path);
      Reset();
      const std::string file =
          Write(kind, {{"train/cat/0.png", png}, c.entry, {"train/dog/1.png", png}});
      for (const absl::Status& s :
           {format().Inspect(file).status(), format().Open(file).status()}) {
        EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
        EXPECT_THAT(s.message(), HasSubstr(file + c.message));
      }
    }
  }
}

TEST_F(ArchiveFormatTest, DamagedArchivesAndImagesAreNamed) {
  const std::vector<uint8_t> png = EncodePng(TestImage(0, 3, 30, 30), 3);
  const std::vector<uint8_t> huge = qnet::testing::PngClaiming(100000, 100000);
  const std::vector<std::pair<std::vector<ArchiveEntry>, std::string>> cases = {
      {{{"train/cat/0.png", {png.begin(), png.begin() + 20}}},
       "/train/cat/0.png: corrupt or truncated PNG"},
      {{{"train/cat/0.png", huge}}, "/train/cat/0.png: header declares 100000x100000 pixels"},
      {{{"train/cat/0.png", png}, {"train/cat/notes.txt", {'x'}}},
       "/train/cat/notes.txt: not a JPEG or PNG image"},
      {{{"train/cat/0.png", png}, {"train/dog/", {}, ArchiveEntry::kFolder}},
       "/train/dog/: empty class folder"},
      {{{"images/cat/0.png", png}}, ": missing the train split"},
      {{{"train/cat/0.png", png}, {"test/cow/1.png", png}}, "/test/cow/: class not in train/"},
  };
  for (const auto& [entries, message] : cases) {
    SCOPED_TRACE(message);
    Reset();
    const std::string file = Write(ArchiveKind::kTarGz, entries);
    const absl::Status s = format().Inspect(file).status();
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
    EXPECT_THAT(s.message(), HasSubstr(file + message));
  }

  // A truncated archive, and a file that is no archive at all.
  Reset();
  const std::string file = Write(ArchiveKind::kTar, Dataset(""));
  std::filesystem::resize_file(file, 1800);
  absl::Status cut = format().Open(file).status();
  EXPECT_EQ(cut.code(), absl::StatusCode::kInvalidArgument) << cut;
  EXPECT_THAT(cut.message(), HasSubstr(file + ": damaged or truncated"));
  qnet::testing::WriteFile(file, std::vector<uint8_t>(600, 'x'));
  EXPECT_FALSE(format().Detect(file));
  EXPECT_THAT(format().Inspect(file).status().message(),
              HasSubstr(file + ": not a tar, tar.gz or zip archive"));
  // A folder with two files is not an upload.
  qnet::testing::WriteFile(Path("other"), {'x'});
  EXPECT_FALSE(format().Detect(dir_));
  EXPECT_THAT(format().Inspect(dir_).status().message(),
              HasSubstr("expected the dataset file alone in this folder, found blob, other"));
}

TEST_F(ArchiveFormatTest, ACompressionBombIsRefusedBeforeItIsInflated) {
  std::vector<ArchiveEntry> entries = Dataset("");
  entries.push_back({"zeros.bin", std::vector<uint8_t>(size_t{24} << 20, 0)});
  const std::string file = Write(ArchiveKind::kTarGz, entries);
  ASSERT_LT(std::filesystem::file_size(file), size_t{1} << 20);
  const absl::Status s = format().Inspect(file).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr(file + "/zeros.bin: entries expand to more than 64 times"));
}

TEST_F(ArchiveFormatTest, ConcurrentDecodesAgree) {
  std::vector<ArchiveEntry> entries;
  for (int i = 0; i < 24; ++i) {
    const std::string name = absl::StrCat("train/c", i % 3, "/", i);
    entries.push_back(i % 2 == 0 ? ArchiveEntry{name + ".png", EncodePng(TestImage(i, 3, 9, 11), 3)}
                                 : ArchiveEntry{name + ".jpg", EncodeJpeg(TestImage(i, 3, 9, 11))});
  }
  const std::string file = Write(ArchiveKind::kZip, entries);
  absl::StatusOr<DatasetReader> reader = format().Open(file);
  ASSERT_TRUE(reader.ok()) << reader.status();
  EXPECT_EQ(qnet::testing::ConcurrentDecodeMismatches(*reader->train, 4, 5), 0);
}

}  // namespace
}  // namespace qnet::datasets
