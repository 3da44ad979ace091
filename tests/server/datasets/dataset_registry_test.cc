// DatasetRegistry: flag parsing, names, formats, importing files as blobs with a digest cache.
#include "server/datasets/dataset_registry.h"

#include <filesystem>

#include "common/digest.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/datasets/dataset_files.h"
#include "tests/server/test_util.h"

namespace qnet::server {
namespace {

using ::testing::HasSubstr;
using testing::TempDir;

TEST(DatasetRegistryTest, ParsesFlags) {
  auto f = DatasetRegistry::ParseFlag("cifar10=cifar10:/data/cifar-10-batches-bin");
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(f->name, "cifar10");
  EXPECT_EQ(f->format, "cifar10");
  EXPECT_EQ(f->dir, "/data/cifar-10-batches-bin");
  auto colon_in_dir = DatasetRegistry::ParseFlag("x=idx:/mnt/a:b");
  ASSERT_TRUE(colon_in_dir.ok());
  EXPECT_EQ(colon_in_dir->dir, "/mnt/a:b");
  for (const char* bad : {"cifar10", "cifar10=cifar10", "x=idx:", "=idx"}) {
    EXPECT_FALSE(DatasetRegistry::ParseFlag(bad).ok()) << bad;
  }
}

TEST(DatasetRegistryTest, NamesAndFormats) {
  TempDir dir;
  DatasetRegistry registry;
  EXPECT_TRUE(registry.empty());
  EXPECT_EQ(registry.Add("../x", "idx", dir.path()).code(), absl::StatusCode::kInvalidArgument);
  absl::Status unknown = registry.Add("x", "png", dir.path());
  EXPECT_EQ(unknown.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(unknown.message(), "dataset x: unknown format \"png\" (archive, cifar10, idx, imagefolder, npz)");
  EXPECT_EQ(registry.Add("x", "idx", dir / "missing").code(), absl::StatusCode::kNotFound);
  ASSERT_TRUE(registry.Add("cifar", "cifar10", dir.path()).ok());
  ASSERT_TRUE(registry.Add("fashion-mnist", "idx", dir.path()).ok());
  EXPECT_EQ(registry.Names(), "cifar, fashion-mnist");
  const DatasetEntry* cifar = registry.Find("cifar");
  ASSERT_NE(cifar, nullptr);
  EXPECT_EQ(cifar->info.channels(), 3);
  EXPECT_EQ(cifar->info.height(), 32);
  EXPECT_EQ(cifar->info.num_classes(), 10);
  EXPECT_EQ(registry.Find("fashion-mnist")->info.format(), "idx");
  EXPECT_EQ(registry.Find("nope"), nullptr);
  EXPECT_EQ(registry.List().size(), 2u);
}

TEST(DatasetRegistryTest, ShapeComesFromTheFilesWhenTheyCanBeRead) {
  TempDir dir;
  qnet::testing::WriteIdxDataset(dir / "small", {.rows = 6, .cols = 5}, /*gz=*/false);
  qnet::testing::WriteCifar(dir / "cifar/cifar-10-batches-bin");
  DatasetRegistry registry;
  ASSERT_TRUE(registry.Add("small", "idx", dir / "small").ok());
  ASSERT_TRUE(registry.Add("cifar", "cifar10", dir / "cifar").ok());
  const qnet::v1::Dataset& small = registry.Find("small")->info;
  EXPECT_EQ(small.format(), "idx");
  EXPECT_EQ(small.channels(), 1);
  EXPECT_EQ(small.height(), 6);
  EXPECT_EQ(small.width(), 5);
  EXPECT_EQ(small.num_classes(), 10);
  const qnet::v1::Dataset& cifar = registry.Find("cifar")->info;
  EXPECT_EQ(cifar.channels(), 3);
  EXPECT_EQ(cifar.width(), 32);

  // Files that do not parse yet: still registered, with the format's usual shape.
  testing::WriteFile(dir / "small/train-images-idx3-ubyte", "not an IDX file");
  ASSERT_TRUE(registry.Add("small", "idx", dir / "small").ok());
  EXPECT_EQ(registry.Find("small")->info.height(), 28);
  EXPECT_EQ(registry.Find("small")->info.width(), 28);
}

TEST(DatasetRegistryTest, ImportsFilesOnceAndCachesDigests) {
  TempDir dir;
  testing::MakeFakeIdxDataset(dir / "fm");
  testing::WriteFile(dir / "fm/.hidden", "skip me");
  auto blobs = BlobStore::Open(dir / "blobs", 1);  // the client limit does not apply here
  ASSERT_TRUE(blobs.ok());
  DatasetRegistry registry;
  ASSERT_TRUE(registry.Add("fm", "idx", dir / "fm").ok());
  ASSERT_TRUE(registry.ImportFiles(**blobs, dir / "digests.json").ok());
  const DatasetEntry* fm = registry.Find("fm");
  ASSERT_EQ(fm->files.size(), 4u);
  EXPECT_EQ(fm->files[0].name(), "t10k-images-idx3-ubyte.gz");
  EXPECT_EQ(fm->files[0].digest(), DigestOf("fake t10k-images-idx3-ubyte.gz"));
  EXPECT_TRUE((*blobs)->Contains(fm->files[0].digest()));
  EXPECT_THAT(testing::ReadFile(dir / "digests.json"), HasSubstr(fm->files[0].digest()));

  // A second start uses the cache: drop a blob's content and make the cache claim it.
  const std::string stale = testing::ReadFile(dir / "digests.json");
  DatasetRegistry again;
  ASSERT_TRUE(again.Add("fm", "idx", dir / "fm").ok());
  ASSERT_TRUE(again.ImportFiles(**blobs, dir / "digests.json").ok());
  EXPECT_EQ(again.Find("fm")->files[0].digest(), fm->files[0].digest());
  EXPECT_EQ(testing::ReadFile(dir / "digests.json"), stale);  // nothing re-hashed

  // A changed file is hashed again; a garbage cache is ignored, not fatal.
  testing::WriteFile(dir / "fm/t10k-images-idx3-ubyte.gz", "new content, longer than before");
  testing::WriteFile(dir / "digests.json", "{not json");
  DatasetRegistry changed;
  ASSERT_TRUE(changed.Add("fm", "idx", dir / "fm").ok());
  ASSERT_TRUE(changed.ImportFiles(**blobs, dir / "digests.json").ok());
  EXPECT_EQ(changed.Find("fm")->files[0].digest(), DigestOf("new content, longer than before"));
}

// The files the format reads are what workers get, also from a subfolder the format looks into,
// under the plain names the worker's dataset folder takes.
TEST(DatasetRegistryTest, ImportsTheFilesTheFormatReadsFromItsSubfolder) {
  TempDir dir;
  qnet::testing::WriteCifar(dir / "cifar/cifar-10-batches-bin");
  testing::WriteFile(dir / "cifar/readme.txt", "not part of the dataset");
  auto blobs = BlobStore::Open(dir / "blobs", 1);
  ASSERT_TRUE(blobs.ok());
  DatasetRegistry registry;
  ASSERT_TRUE(registry.Add("cifar", "cifar10", dir / "cifar").ok());
  ASSERT_TRUE(registry.ImportFiles(**blobs, dir / "digests.json").ok());
  std::vector<std::string> names;
  for (const qnet::v1::DatasetFile& f : registry.Find("cifar")->files) names.push_back(f.name());
  EXPECT_THAT(names, ::testing::UnorderedElementsAre("data_batch_1.bin", "data_batch_2.bin",
                                                     "data_batch_3.bin", "data_batch_4.bin",
                                                     "data_batch_5.bin", "test_batch.bin"));
}

}  // namespace
}  // namespace qnet::server
