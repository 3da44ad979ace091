// JobValidator and the TorchScript archive check: every bad spec is INVALID_ARGUMENT with words a
// person can act on; garbage archives never crash the check.
#include "server/api/job_validator.h"

#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/digest.h"
#include "common/job/job_spec.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/blobs/onnx_model_check.h"
#include "server/blobs/torchscript_archive.h"
#include "tests/server/test_util.h"

namespace qnet::server {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using testing::TempDir;

class JobValidatorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    testing::MakeFakeIdxDataset(dir_ / "fmnist");
    ASSERT_TRUE(datasets_.Add("fashion-mnist", "idx", dir_ / "fmnist").ok());
    ASSERT_TRUE(datasets_.Add("mnist", "idx", dir_ / "fmnist").ok());
    auto blobs = BlobStore::Open(dir_ / "blobs", 1 << 20);
    ASSERT_TRUE(blobs.ok());
    blobs_ = *std::move(blobs);
    validator_ = std::make_unique<JobValidator>(&datasets_, blobs_.get());
  }

  std::string Upload(const std::string& data) {
    auto up = blobs_->StartUpload(0, "");
    EXPECT_TRUE(up.ok());
    EXPECT_TRUE((*up)->Append(data).ok());
    auto blob = (*up)->Commit();
    EXPECT_TRUE(blob.ok());
    return blob->digest;
  }

  static qnet::v1::JobSpec Valid() {
    qnet::v1::JobSpec spec;
    spec.set_model("zoo:lenet5");
    spec.set_dataset("fashion-mnist");
    spec.set_weight_bits(2);
    spec.set_activation_bits(2);
    return spec;
  }

  // The message of an expected INVALID_ARGUMENT.
  std::string Refusal(const qnet::v1::JobSpec& spec) {
    absl::Status s = validator_->Validate(spec);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << spec.DebugString();
    return std::string(s.message());
  }

  TempDir dir_;
  DatasetRegistry datasets_;
  std::unique_ptr<BlobStore> blobs_;
  std::unique_ptr<JobValidator> validator_;
};

TEST_F(JobValidatorTest, AcceptsGoodSpecs) {
  EXPECT_TRUE(validator_->Validate(Valid()).ok());
  qnet::v1::JobSpec spec = Valid();
  spec.set_model("zoo:resnet20");
  spec.set_weight_bits(8);
  spec.set_activation_bits(0);
  spec.add_weight_levels(-1);
  spec.add_weight_levels(0);
  spec.add_weight_levels(1);
  spec.add_export_formats("onnx");
  spec.add_export_formats("packed");
  spec.mutable_training()->set_epochs(10);
  spec.mutable_training()->set_batch_size(128);
  spec.mutable_training()->set_learning_rate(0.01);
  EXPECT_TRUE(validator_->Validate(spec).ok()) << validator_->Validate(spec);
  spec.set_model(Upload(testing::MakeTorchScriptZip()));
  EXPECT_TRUE(validator_->Validate(spec).ok()) << validator_->Validate(spec);
  EXPECT_TRUE(validator_->Validate(spec).ok());  // second time from the cache
}

TEST_F(JobValidatorTest, UnknownDatasetListsTheKnownOnes) {
  qnet::v1::JobSpec spec = Valid();
  spec.set_dataset("imagenet");
  EXPECT_THAT(Refusal(spec),
              AllOf(HasSubstr("unknown dataset \"imagenet\""), HasSubstr("fashion-mnist, mnist")));
  spec.set_dataset("");
  EXPECT_THAT(Refusal(spec), HasSubstr("dataset is required"));
}

TEST_F(JobValidatorTest, DatasetPathsAreRefused) {
  for (const char* bad : {"../../etc/passwd", "/usr/share/datasets/fashion-mnist", "a/b",
                          "fashion-mnist/..", "..", "Fashion MNIST", "x\n"}) {
    qnet::v1::JobSpec spec = Valid();
    spec.set_dataset(bad);
    EXPECT_THAT(Refusal(spec), HasSubstr("not a dataset name")) << bad;
  }
}

TEST_F(JobValidatorTest, BitsOutOfRange) {
  for (int bits : {0, -1, 9, 33}) {
    qnet::v1::JobSpec spec = Valid();
    spec.set_weight_bits(bits);
    EXPECT_THAT(Refusal(spec), HasSubstr("weight_bits must be in 1..8")) << bits;
  }
  for (int bits : {-1, 9, 32}) {
    qnet::v1::JobSpec spec = Valid();
    spec.set_activation_bits(bits);
    EXPECT_THAT(Refusal(spec), HasSubstr("activation_bits")) << bits;
  }
}

TEST_F(JobValidatorTest, ModelNames) {
  qnet::v1::JobSpec spec = Valid();
  spec.set_model("zoo:vgg16");
  EXPECT_THAT(Refusal(spec), AllOf(HasSubstr("unknown zoo model"), HasSubstr("zoo:lenet5")));
  spec.set_model("/home/me/model.pt");
  EXPECT_THAT(Refusal(spec), HasSubstr("sha256:<hex>"));
  spec.set_model("");
  EXPECT_THAT(Refusal(spec), HasSubstr("model is required"));
  spec.set_model("sha256:1234");
  EXPECT_THAT(Refusal(spec), HasSubstr("not a digest"));
}

TEST_F(JobValidatorTest, ModelBlobMustBeUploadedTorchScript) {
  qnet::v1::JobSpec spec = Valid();
  const std::string missing = DigestOf("never uploaded");
  spec.set_model(missing);
  EXPECT_THAT(Refusal(spec), HasSubstr("model blob " + missing + " not uploaded"));

  spec.set_model(Upload("this is not a model at all, just some bytes"));
  EXPECT_THAT(Refusal(spec), HasSubstr("is not a TorchScript archive"));

  spec.set_model(Upload(testing::MakeZip({{"weights/a.txt", "1"}, {"readme", "2"}})));
  EXPECT_THAT(Refusal(spec), AllOf(HasSubstr("not a TorchScript archive"), HasSubstr("data.pkl")));
}

TEST_F(JobValidatorTest, WeightLevels) {
  qnet::v1::JobSpec spec = Valid();
  spec.add_weight_levels(0.5);
  spec.add_weight_levels(-0.5);
  EXPECT_THAT(Refusal(spec), HasSubstr("sorted ascending and distinct"));
  spec.clear_weight_levels();
  spec.add_weight_levels(0);
  spec.add_weight_levels(0);
  EXPECT_THAT(Refusal(spec), HasSubstr("sorted ascending and distinct"));
  spec.clear_weight_levels();
  spec.add_weight_levels(1);
  EXPECT_THAT(Refusal(spec), HasSubstr("2..256 levels"));
  spec.clear_weight_levels();
  spec.add_weight_levels(0);
  spec.add_weight_levels(std::numeric_limits<double>::infinity());
  EXPECT_THAT(Refusal(spec), HasSubstr("finite"));
}

TEST_F(JobValidatorTest, TrainingRanges) {
  qnet::v1::JobSpec spec = Valid();
  spec.mutable_training()->set_epochs(5000);
  EXPECT_THAT(Refusal(spec), HasSubstr("training.epochs must be in 0..1000"));
  spec = Valid();
  spec.mutable_training()->set_batch_size(-4);
  EXPECT_THAT(Refusal(spec), HasSubstr("training.batch_size"));
  spec = Valid();
  spec.mutable_training()->set_pretrain_epochs(-1);
  EXPECT_THAT(Refusal(spec), HasSubstr("training.pretrain_epochs"));
  spec = Valid();
  spec.mutable_training()->set_learning_rate(std::nan(""));
  EXPECT_THAT(Refusal(spec), HasSubstr("training.learning_rate"));
  spec = Valid();
  spec.mutable_training()->set_max_train_samples(-5);
  EXPECT_THAT(Refusal(spec), HasSubstr("max_train_samples"));
  // Beyond the engine's limit the worker would fail the job after it was queued.
  spec = Valid();
  spec.mutable_training()->set_temperature_slope(job::kMaxTemperatureSlope + 1);
  EXPECT_THAT(Refusal(spec), HasSubstr("training.temperature_slope must be in 0..2000"));
  for (double weight : {-0.1, 1.5, std::nan("")}) {
    spec = Valid();
    spec.mutable_training()->set_distill_weight(weight);
    EXPECT_THAT(Refusal(spec), HasSubstr("training.distill_weight must be in 0..1"));
  }
  for (double weight : {0.0, 1.0}) {
    spec = Valid();
    spec.mutable_training()->set_distill_weight(weight);
    EXPECT_TRUE(validator_->Validate(spec).ok()) << weight;
  }
}

TEST_F(JobValidatorTest, InputNormalization) {
  qnet::v1::JobSpec spec = Valid();
  spec.mutable_input_normalization()->add_mean(0.5);
  spec.mutable_input_normalization()->add_std(0.5);
  EXPECT_TRUE(validator_->Validate(spec).ok());
  spec.mutable_input_normalization()->clear_std();
  EXPECT_THAT(Refusal(spec), HasSubstr("input_normalization: input normalization needs one mean "
                                       "and one std per channel; got 1 mean(s) and 0 std(s)"));
  spec.mutable_input_normalization()->add_std(0);
  EXPECT_THAT(Refusal(spec), HasSubstr("std of channel 0 must be finite and > 0, got 0"));
  // Three channels for a one-channel dataset: refused here, not after the job was queued.
  spec = Valid();
  for (int c = 0; c < 3; ++c) {
    spec.mutable_input_normalization()->add_mean(0.5);
    spec.mutable_input_normalization()->add_std(0.25);
  }
  EXPECT_THAT(Refusal(spec), HasSubstr("input_normalization gives 3 value(s) per list but dataset "
                                       "\"fashion-mnist\" has 1 channel(s)"));
}

TEST_F(JobValidatorTest, ExportFormats) {
  qnet::v1::JobSpec spec = Valid();
  spec.add_export_formats("pdf");
  EXPECT_THAT(Refusal(spec), AllOf(HasSubstr("unknown export format \"pdf\""),
                                   HasSubstr("torchscript, onnx, packed, metrics")));
  spec.clear_export_formats();
  spec.add_export_formats("onnx");
  spec.add_export_formats("onnx");
  EXPECT_THAT(Refusal(spec), HasSubstr("listed twice"));
}

TEST_F(JobValidatorTest, ReportsEveryProblemAtOnce) {
  qnet::v1::JobSpec spec;
  spec.set_weight_bits(33);
  const std::string message = Refusal(spec);
  EXPECT_THAT(message, AllOf(HasSubstr("model is required"), HasSubstr("dataset is required"),
                             HasSubstr("weight_bits")));
}

TEST_F(JobValidatorTest, HugeSpecsGetAShortMessage) {
  qnet::v1::JobSpec spec = Valid();
  for (int i = 0; i < 100000; ++i) spec.add_export_formats(i % 2 ? "onnx" : "gif");
  spec.set_model("zoo:" + std::string(1 << 20, 'x'));
  const std::string message = Refusal(spec);
  EXPECT_LT(message.size(), 2000u);
  EXPECT_THAT(message, HasSubstr("bytes; at most 65536 bytes are accepted"));
  spec = Valid();
  for (int i = 0; i < 1000; ++i) spec.add_export_formats(i % 2 ? "onnx" : "gif");
  EXPECT_THAT(Refusal(spec),
              AllOf(HasSubstr("export_formats lists 1000 entries"), HasSubstr("more")));
}

TEST_F(JobValidatorTest, BoundsWhatOneJobCostsWithTheOperatorsLimits) {
  qnet::v1::JobSpec spec = Valid();
  spec.set_priority(INT32_MAX);
  spec.mutable_training()->set_epochs(1000);
  spec.mutable_training()->set_pretrain_epochs(1000);
  spec.mutable_training()->set_batch_size(1);
  spec.mutable_training()->set_max_train_samples(int64_t{1} << 62);
  EXPECT_THAT(Refusal(spec), AllOf(HasSubstr("priority must be in -100..100"),
                                   HasSubstr("must be at most 500 (got 1000 + 1000)"),
                                   HasSubstr("max_train_samples must be at most 100000000")));
  JobValidator strict(
      &datasets_, blobs_.get(),
      {.max_priority = 5, .max_epochs = 10, .max_batch_size = 64, .max_samples = 1000});
  spec = Valid();
  spec.set_priority(-5);
  spec.mutable_training()->set_epochs(10);
  spec.mutable_training()->set_batch_size(64);
  spec.mutable_training()->set_max_test_samples(1000);
  EXPECT_TRUE(strict.Validate(spec).ok()) << strict.Validate(spec);
  spec.mutable_training()->set_batch_size(65);
  EXPECT_THAT(std::string(strict.Validate(spec).message()),
              HasSubstr("training.batch_size must be at most 64 (got 65)"));
}

TEST_F(JobValidatorTest, RemembersEachBlobsVerdict) {
  qnet::v1::JobSpec spec = Valid();
  spec.set_model(Upload(testing::MakeZip({{"weights/a.txt", "1"}})));
  EXPECT_THAT(Refusal(spec), HasSubstr("data.pkl"));
  // Blobs never change, so the second submit takes the first verdict without reading the file:
  // swap its content for a good archive and the verdict stays.
  testing::WriteFile(blobs_->PathOf(spec.model()), testing::MakeTorchScriptZip());
  EXPECT_THAT(Refusal(spec), HasSubstr("data.pkl"));
}

TEST(TorchScriptArchiveTest, StructuralCheck) {
  TempDir dir;
  auto check = [&](const std::string& bytes) {
    testing::WriteFile(dir / "m.pt", bytes);
    return CheckTorchScriptArchive(dir / "m.pt");
  };
  EXPECT_TRUE(check(testing::MakeTorchScriptZip()).ok());
  EXPECT_TRUE(check(testing::MakeZip({{"constants.pkl", "x"}})).ok());
  EXPECT_THAT(std::string(check("").message()), HasSubstr("too small"));
  EXPECT_THAT(std::string(check(std::string(100, 'x')).message()), HasSubstr("not a ZIP file"));
  std::string zip = testing::MakeTorchScriptZip();
  EXPECT_THAT(std::string(check(zip.substr(0, zip.size() - 10)).message()),
              HasSubstr("(truncated?)"));
  EXPECT_THAT(std::string(check(zip.substr(0, zip.size() / 2)).message()),
              HasSubstr("no readable ZIP end-of-central-directory record"));
  // A file named data.pkl.bak or mydata.pkl does not count.
  EXPECT_FALSE(check(testing::MakeZip({{"a/data.pkl.bak", "x"}, {"a/mydata.pkl", "x"}})).ok());
}

TEST(TorchScriptArchiveTest, ExaminesABoundedDirectory) {
  TempDir dir;
  // data.pkl after 9 MiB of directory: a real model lists it long before (one entry per tensor),
  // so the check stops reading and says why.
  std::vector<std::pair<std::string, std::string>> entries;
  for (int i = 0; i < 150; ++i) entries.push_back({absl::StrCat(i, std::string(60000, 'n')), ""});
  entries.push_back({"model/data.pkl", "x"});
  testing::WriteFile(dir / "m.pt", testing::MakeZip(entries));
  EXPECT_THAT(std::string(CheckTorchScriptArchive(dir / "m.pt").message()),
              AllOf(HasSubstr("no data.pkl or constants.pkl among the first"),
                    HasSubstr("torch.jit.save")));
  // As many small entries as a big model has tensors are fine.
  entries.clear();
  for (int i = 0; i < 20000; ++i) entries.push_back({absl::StrCat("model/data/", i), ""});
  entries.push_back({"model/data.pkl", "x"});
  testing::WriteFile(dir / "m.pt", testing::MakeZip(entries));
  EXPECT_TRUE(CheckTorchScriptArchive(dir / "m.pt").ok());
}

// A stored ZIP whose central directory entries carry `extra` as their extra field.
std::string ZipWithExtraFields(const std::vector<std::string>& names, const std::string& extra) {
  const auto le = [](uint64_t v, int bytes) {
    std::string out;
    for (int i = 0; i < bytes; ++i) out += static_cast<char>((v >> (8 * i)) & 0xff);
    return out;
  };
  std::string local, central;
  for (const std::string& name : names) {
    const std::string& e = absl::EndsWith(name, ".pkl") ? "" : extra;
    central += le(0x02014b50, 4) + le(20, 2) + le(20, 2) + std::string(16, '\0') + le(0, 4) +
               le(name.size(), 2) + le(e.size(), 2) + std::string(10, '\0') + le(local.size(), 4) +
               name + e;
    local += le(0x04034b50, 4) + le(20, 2) + std::string(20, '\0') + le(name.size(), 2) + le(0, 2) +
             name;
  }
  return local + central + le(0x06054b50, 4) + le(0, 4) + le(names.size(), 2) +
         le(names.size(), 2) + le(central.size(), 4) + le(local.size(), 4) + le(0, 2);
}

TEST(TorchScriptArchiveTest, BoundsTheWorkOfExtraFields) {
  TempDir dir;
  // Extra fields of 16,000 empty records each, which minizip walks record by record: within the
  // directory's byte limit, but far more work than any real archive takes.
  std::string empty_records;
  for (int i = 0; i < 16000; ++i) empty_records += std::string("\x77\x77\0\0", 4);
  std::vector<std::string> names;
  for (int i = 0; i < 120; ++i) names.push_back(absl::StrCat("e", i));
  names.push_back("model/data.pkl");
  testing::WriteFile(dir / "m.pt", ZipWithExtraFields(names, empty_records));
  EXPECT_THAT(std::string(CheckTorchScriptArchive(dir / "m.pt").message()),
              HasSubstr("takes too much work to read"));
  // A few such entries are fine.
  names.erase(names.begin(), names.begin() + 110);
  testing::WriteFile(dir / "m.pt", ZipWithExtraFields(names, empty_records));
  EXPECT_TRUE(CheckTorchScriptArchive(dir / "m.pt").ok());
}

// ONNX blobs pass qnetd's check by their top-level ModelProto fields (the worker parses them).
TEST(OnnxModelCheckTest, StructuralCheck) {
  TempDir dir;
  auto check = [&](const std::string& bytes) {
    testing::WriteFile(dir / "m.onnx", bytes);
    return CheckOnnxModel(dir / "m.onnx");
  };
  // ir_version 8, a graph holding one empty node, opset 17.
  const std::string model("\x08\x08\x3a\x02\x0a\x00\x42\x02\x10\x11", 10);
  EXPECT_TRUE(check(model).ok());
  EXPECT_THAT(std::string(check(model.substr(0, 5)).message()), HasSubstr("runs past the end"));
  EXPECT_THAT(std::string(check(model.substr(0, 2)).message()),
              HasSubstr("no ir_version or no graph"));
  EXPECT_THAT(std::string(check(std::string(100, 'x')).message()),
              HasSubstr("does not start a ModelProto field"));
  EXPECT_FALSE(check("").ok());
}

TEST(TorchScriptArchiveTest, CorruptedArchivesNeverCrash) {
  TempDir dir;
  const std::string zip = testing::MakeTorchScriptZip();
  std::mt19937 rng(42);
  for (int i = 0; i < 2000; ++i) {
    std::string bytes = zip;
    const int flips = 1 + static_cast<int>(rng() % 8);
    for (int f = 0; f < flips; ++f) {
      bytes[rng() % bytes.size()] = static_cast<char>(rng());
    }
    if (rng() % 4 == 0) bytes.resize(rng() % bytes.size());
    testing::WriteFile(dir / "m.pt", bytes);
    absl::Status s = CheckTorchScriptArchive(dir / "m.pt");
    EXPECT_TRUE(s.ok() || s.code() == absl::StatusCode::kInvalidArgument) << s;
  }
}

}  // namespace
}  // namespace qnet::server
