// DatasetRegistry: flag parsing, names, formats, importing files as blobs with a digest cache,
// in-place operator datasets, and uploaded datasets (durable, idempotent, refusals).
#include "server/datasets/dataset_registry.h"

#include <filesystem>

#include "common/digest.h"
#include "datasets/dataset_format.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/datasets/dataset_files.h"
#include "tests/server/test_util.h"

namespace qnet::server {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using testing::TempDir;

TEST(DatasetRegistryTest, ParsesFlags) {
  auto f = DatasetRegistry::ParseFlag("cifar10=cifar10:/data/cifar-10-batches-bin");
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(f->name, "cifar10");
  EXPECT_EQ(f->format, "cifar10");
  EXPECT_EQ(f->path, "/data/cifar-10-batches-bin");
  auto colon_in_dir = DatasetRegistry::ParseFlag("x=idx:/mnt/a:b");
  ASSERT_TRUE(colon_in_dir.ok());
  EXPECT_EQ(colon_in_dir->path, "/mnt/a:b");
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
  EXPECT_EQ(unknown.message(),
            "dataset x: unknown format \"png\" (" + datasets::DatasetFormatNameList() + ")");
  EXPECT_EQ(registry.Add("x", "idx", dir / "missing").code(), absl::StatusCode::kNotFound);
  ASSERT_TRUE(registry.Add("cifar", "cifar10", dir.path()).ok());
  ASSERT_TRUE(registry.Add("fashion-mnist", "idx", dir.path()).ok());
  EXPECT_EQ(registry.Names(), "cifar, fashion-mnist");
  const std::optional<DatasetEntry> cifar = registry.Find("cifar");
  ASSERT_TRUE(cifar.has_value());
  EXPECT_EQ(cifar->info.channels(), 3);
  EXPECT_EQ(cifar->info.height(), 32);
  EXPECT_EQ(cifar->info.num_classes(), 10);
  EXPECT_EQ(registry.Find("fashion-mnist")->info.format(), "idx");
  EXPECT_FALSE(registry.Find("nope").has_value());
  EXPECT_EQ(registry.List().size(), 2u);
}

TEST(DatasetRegistryTest, ShapeComesFromTheFilesWhenTheyCanBeRead) {
  TempDir dir;
  qnet::testing::WriteIdxDataset(dir / "small", {.rows = 6, .cols = 5}, /*gz=*/false);
  qnet::testing::WriteCifar(dir / "cifar/cifar-10-batches-bin");
  DatasetRegistry registry;
  ASSERT_TRUE(registry.Add("small", "idx", dir / "small").ok());
  ASSERT_TRUE(registry.Add("cifar", "cifar10", dir / "cifar").ok());
  const qnet::v1::Dataset small = registry.Find("small")->info;
  EXPECT_EQ(small.format(), "idx");
  EXPECT_EQ(small.channels(), 1);
  EXPECT_EQ(small.height(), 6);
  EXPECT_EQ(small.width(), 5);
  EXPECT_EQ(small.num_classes(), 10);
  const qnet::v1::Dataset cifar = registry.Find("cifar")->info;
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
  const std::optional<DatasetEntry> fm = registry.Find("fm");
  ASSERT_TRUE(fm.has_value());
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
  const std::optional<DatasetEntry> cifar = registry.Find("cifar");
  for (const qnet::v1::DatasetFile& f : cifar->files) names.push_back(f.name());
  EXPECT_THAT(names, ::testing::UnorderedElementsAre("data_batch_1.bin", "data_batch_2.bin",
                                                     "data_batch_3.bin", "data_batch_4.bin",
                                                     "data_batch_5.bin", "test_batch.bin"));
}

// Stands in for CheckDatasetFile: "good:..." blobs pass, anything else is refused.
absl::StatusOr<qnet::v1::Dataset> FakeCheck(const std::string& path) {
  const std::string content = testing::ReadFile(path);
  if (!content.starts_with("good:")) {
    return absl::InvalidArgumentError("train/cat/3.png: not a PNG or JPEG image");
  }
  qnet::v1::Dataset info;
  info.set_format("archive");
  info.set_channels(3);
  info.set_height(32);
  info.set_width(24);
  info.set_num_classes(2);
  info.set_train_images(8);
  info.set_test_images(0);
  info.add_class_names("cat");
  info.add_class_names("dog");
  return info;
}

class UploadedDatasetTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto blobs = BlobStore::Open(dir_ / "blobs", 1 << 20);
    ASSERT_TRUE(blobs.ok());
    blobs_ = *std::move(blobs);
  }

  std::string Put(const std::string& content) {
    auto upload = blobs_->StartUpload(0, "");
    EXPECT_TRUE(upload.ok() && (*upload)->Append(content).ok());
    return (*upload)->Commit()->digest;
  }

  // A registry as qnetd builds it at startup: an operator dataset, then the uploads recorded.
  std::unique_ptr<DatasetRegistry> Start() {
    auto registry = std::make_unique<DatasetRegistry>([this](const std::string& path) {
      ++checks_;
      return FakeCheck(path);
    });
    qnet::testing::WriteIdxDataset(dir_ / "fm", {.rows = 6, .cols = 5}, /*gz=*/false);
    EXPECT_TRUE(registry->Add("fashion-mnist", "idx", dir_ / "fm").ok());
    EXPECT_TRUE(registry->LoadUploaded(*blobs_, dir_ / "datasets.json").ok());
    return registry;
  }

  TempDir dir_;
  std::unique_ptr<BlobStore> blobs_;
  int checks_ = 0;
};

TEST_F(UploadedDatasetTest, RegistersDurablyAndARepeatIsANoOp) {
  const std::string digest = Put("good: pets v1");
  auto registry = Start();
  auto pets = registry->CreateUploaded("pets", digest, /*replace=*/false, *blobs_, "alice");
  ASSERT_TRUE(pets.ok()) << pets.status();
  EXPECT_EQ(pets->name(), "pets");
  EXPECT_EQ(pets->origin(), "uploaded");
  EXPECT_EQ(pets->digest(), digest);
  EXPECT_EQ(pets->size_bytes(), 13);
  EXPECT_EQ(pets->format(), "archive");
  EXPECT_EQ(pets->train_images(), 8);
  EXPECT_THAT(pets->class_names(), ::testing::ElementsAre("cat", "dog"));
  EXPECT_GT(pets->create_time().seconds(), 0);
  // Workers get the blob as the one file of the dataset folder.
  const std::optional<DatasetEntry> entry = registry->Find("pets");
  ASSERT_TRUE(entry.has_value());
  ASSERT_EQ(entry->files.size(), 1u);
  EXPECT_EQ(entry->files[0].name(), "dataset.tar");
  EXPECT_EQ(entry->files[0].digest(), digest);
  EXPECT_FALSE(entry->in_place);

  // The same content under the same name: the same record, not checked again.
  auto again = registry->CreateUploaded("pets", digest, /*replace=*/false, *blobs_, "alice");
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->SerializeAsString(), pets->SerializeAsString());
  EXPECT_EQ(checks_, 1);

  // A restart finds it as it was, next to the operator's.
  registry.reset();
  auto restarted = Start();
  const std::optional<DatasetEntry> back = restarted->Find("pets");
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->info.SerializeAsString(), pets->SerializeAsString());
  EXPECT_EQ(restarted->Names(), "fashion-mnist, pets");
  EXPECT_EQ(restarted->Find("fashion-mnist")->info.origin(), "operator");
}

TEST_F(UploadedDatasetTest, RefusalsRegisterNothing) {
  const std::string good = Put("good: pets v1");
  const std::string other = Put("good: pets v2");
  auto registry = Start();
  auto code = [&](const std::string& name, const std::string& digest, bool replace = false) {
    return registry->CreateUploaded(name, digest, replace, *blobs_, "alice").status().code();
  };
  // A dataset the check refuses, with its reason.
  auto corrupt = registry->CreateUploaded("bad", Put("garbage"), false, *blobs_, "alice");
  EXPECT_EQ(corrupt.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(corrupt.status().message()), HasSubstr("train/cat/3.png"));
  // Names, digests, missing blobs.
  EXPECT_EQ(code("../pets", good), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code("Pets", good), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code(std::string(65, 'a'), good), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code("pets", "sha256:nothex"), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code("pets", DigestOf("never uploaded")), absl::StatusCode::kNotFound);
  // The operator's names are never taken over, not even with replace.
  auto op = registry->CreateUploaded("fashion-mnist", good, /*replace=*/true, *blobs_, "alice");
  EXPECT_EQ(op.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(std::string(op.status().message()), HasSubstr("operator"));
  EXPECT_EQ(registry->Find("fashion-mnist")->info.format(), "idx");
  EXPECT_EQ(registry->Names(), "fashion-mnist");
  EXPECT_FALSE(std::filesystem::exists(dir_ / "datasets.json"));

  // Other content under an uploaded name needs replace.
  ASSERT_TRUE(registry->CreateUploaded("pets", good, false, *blobs_, "alice").ok());
  auto clash = registry->CreateUploaded("pets", other, false, *blobs_, "alice");
  EXPECT_EQ(clash.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(std::string(clash.status().message()), HasSubstr("--replace"));
  EXPECT_EQ(registry->Find("pets")->info.digest(), good);
  auto replaced = registry->CreateUploaded("pets", other, /*replace=*/true, *blobs_, "alice");
  ASSERT_TRUE(replaced.ok()) << replaced.status();
  EXPECT_EQ(Start()->Find("pets")->info.digest(), other);  // durably
}

// Uploads belong to whoever registered them: nobody else lists them or takes their name, while
// the operator's datasets stay everyone's.
TEST_F(UploadedDatasetTest, AnUploadIsItsOwnersAndOperatorDatasetsAreShared) {
  const std::string digest = Put("good: pets v1");
  auto registry = Start();
  auto pets = registry->CreateUploaded("pets", digest, /*replace=*/false, *blobs_, "alice");
  ASSERT_TRUE(pets.ok()) << pets.status();
  EXPECT_EQ(pets->owner(), "alice");
  EXPECT_TRUE(DatasetRegistry::VisibleTo(*pets, "alice"));
  EXPECT_FALSE(DatasetRegistry::VisibleTo(*pets, "bob"));
  EXPECT_FALSE(DatasetRegistry::VisibleTo(*pets, ""));
  EXPECT_TRUE(DatasetRegistry::VisibleTo(registry->Find("fashion-mnist")->info, "bob"));
  EXPECT_EQ(registry->Names("alice"), "fashion-mnist, pets");
  EXPECT_EQ(registry->Names("bob"), "fashion-mnist");
  EXPECT_EQ(registry->Names(), "fashion-mnist, pets");  // admins
  // Bob can neither take the name, with the same content or other, nor replace it.
  for (const bool replace : {false, true}) {
    for (const std::string& content : {digest, Put("good: bob's pets")}) {
      auto clash = registry->CreateUploaded("pets", content, replace, *blobs_, "bob");
      EXPECT_EQ(clash.status().code(), absl::StatusCode::kAlreadyExists);
      EXPECT_THAT(std::string(clash.status().message()), HasSubstr("another identity"));
    }
  }
  // The owner survives a restart.
  registry.reset();
  auto restarted = Start();
  EXPECT_EQ(restarted->Find("pets")->info.owner(), "alice");
  EXPECT_EQ(restarted->Names("bob"), "fashion-mnist");
  EXPECT_THAT(restarted->Digests(), ::testing::Contains(digest));
}

TEST_F(UploadedDatasetTest, AnUnwritableRecordRegistersNothing) {
  auto registry = Start();
  std::filesystem::create_directories(dir_ / "datasets.json.tmp");  // the write cannot start
  auto pets = registry->CreateUploaded("pets", Put("good: pets"), false, *blobs_, "alice");
  EXPECT_EQ(pets.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(pets.status().message()), HasSubstr("dataset records: create failed"));
  EXPECT_THAT(std::string(pets.status().message()), Not(HasSubstr(dir_.path())));  // no paths
  EXPECT_FALSE(registry->Find("pets").has_value());
}

TEST_F(UploadedDatasetTest, RecordsWithoutTheirBlobOrShadowedByTheOperatorAreDropped) {
  const std::string gone = Put("good: gone");
  const std::string kept = Put("good: kept");
  {
    auto registry = Start();
    ASSERT_TRUE(registry->CreateUploaded("gone", gone, false, *blobs_, "alice").ok());
    ASSERT_TRUE(registry->CreateUploaded("kept", kept, false, *blobs_, "alice").ok());
    ASSERT_TRUE(registry->CreateUploaded("taken", kept, false, *blobs_, "alice").ok());
  }
  EXPECT_EQ(checks_, 2);  // "taken" reused the check of the same content
  std::filesystem::remove(blobs_->PathOf(gone));
  DatasetRegistry registry(FakeCheck);
  qnet::testing::WriteIdxDataset(dir_ / "taken", {.rows = 6, .cols = 5}, /*gz=*/false);
  ASSERT_TRUE(registry.Add("taken", "idx", dir_ / "taken").ok());
  ASSERT_TRUE(registry.LoadUploaded(*blobs_, dir_ / "datasets.json").ok());
  EXPECT_EQ(registry.Names(), "kept, taken");
  EXPECT_EQ(registry.Find("taken")->info.origin(), "operator");

  testing::WriteFile(dir_ / "datasets.json", "{not json");
  DatasetRegistry broken(FakeCheck);
  EXPECT_EQ(broken.LoadUploaded(*blobs_, dir_ / "datasets.json").code(),
            absl::StatusCode::kDataLoss);
}

// Formats other than idx and cifar10 are read in place from a volume the workers mount: nothing
// is imported, and a path qnetd cannot see still registers.
TEST(DatasetRegistryTest, OperatorDatasetsOfOtherFormatsAreReadInPlace) {
  TempDir dir;
  auto blobs = BlobStore::Open(dir / "blobs", 1);
  ASSERT_TRUE(blobs.ok());
  std::vector<std::string> others;
  for (const std::string& format : datasets::DatasetFormatNames()) {
    if (format != "idx" && format != "cifar10") others.push_back(format);
  }
  if (others.empty()) GTEST_SKIP() << "only idx and cifar10 are registered in this build";
  DatasetRegistry registry;
  ASSERT_TRUE(registry.Add("pets", others[0], "/no/such/volume/pets").ok());
  ASSERT_TRUE(registry.ImportFiles(**blobs, dir / "digests.json").ok());
  const std::optional<DatasetEntry> pets = registry.Find("pets");
  ASSERT_TRUE(pets.has_value());
  EXPECT_TRUE(pets->in_place);
  EXPECT_EQ(pets->path, "/no/such/volume/pets");
  EXPECT_TRUE(pets->files.empty());
  EXPECT_EQ(pets->info.origin(), "operator");
  EXPECT_EQ(testing::CountFiles(dir / "blobs/sha256"), 0);
}

}  // namespace
}  // namespace qnet::server
