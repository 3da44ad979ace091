// The one job schema's shared rules: the flag binder of `qnet submit` and `qnet-worker run`,
// the defaults, the validator and the catalog.
#include <cstdint>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "common/job/catalog.h"
#include "common/job/job_spec.h"
#include "common/job/job_spec_flags.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace qnet::job {
namespace {

using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(JobSpecFlagsTest, MapsEveryFlag) {
  JobSpecFlags f;
  f.model = "zoo:lenet5";
  f.dataset = "fashion-mnist";
  f.weight_bits = 2;
  f.activation_bits = 3;
  f.weight_levels = "-1, 0,1.5";
  f.epochs = 4;
  f.pretrain_epochs = 1;
  f.batch_size = 64;
  f.learning_rate = 0.01;
  f.max_train_samples = 3000;
  f.max_test_samples = 1000;
  f.seed = 7;
  f.temperature_slope = 20;
  f.distill_weight = 0;
  f.quantize_first_last = true;
  f.learn_thresholds = true;
  f.export_formats = "torchscript,onnx";
  f.input_mean = "0.49, 0.48,0.45";
  f.input_std = "0.25,0.24,0.26";
  absl::StatusOr<v1::JobSpec> spec = BuildJobSpec(f, "sha256:abc");
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->model(), "sha256:abc");
  EXPECT_EQ(spec->dataset(), "fashion-mnist");
  EXPECT_EQ(spec->weight_bits(), 2);
  EXPECT_EQ(spec->activation_bits(), 3);
  EXPECT_THAT(spec->weight_levels(), ElementsAre(-1, 0, 1.5));
  EXPECT_EQ(spec->training().epochs(), 4);
  EXPECT_EQ(spec->training().pretrain_epochs(), 1);
  EXPECT_EQ(spec->training().batch_size(), 64);
  EXPECT_DOUBLE_EQ(spec->training().learning_rate(), 0.01);
  EXPECT_EQ(spec->training().max_train_samples(), 3000);
  EXPECT_EQ(spec->training().max_test_samples(), 1000);
  EXPECT_EQ(spec->training().seed(), 7u);
  EXPECT_DOUBLE_EQ(spec->training().temperature_slope(), 20);
  // 0 is a setting (labels only), not "unset": it must reach the server as present.
  EXPECT_TRUE(spec->training().has_distill_weight());
  EXPECT_EQ(spec->training().distill_weight(), 0);
  EXPECT_TRUE(spec->training().quantize_first_last());
  EXPECT_TRUE(spec->training().learn_thresholds());
  EXPECT_THAT(spec->export_formats(), ElementsAre("torchscript", "onnx"));
  EXPECT_THAT(spec->input_normalization().mean(), ElementsAre(0.49, 0.48, 0.45));
  EXPECT_THAT(spec->input_normalization().std(), ElementsAre(0.25, 0.24, 0.26));
}

TEST(JobSpecFlagsTest, UnsetFlagsLeaveTheDefaultsToTheServer) {
  JobSpecFlags f;
  f.model = "zoo:lenet5";
  absl::StatusOr<v1::JobSpec> spec = BuildJobSpec(f, f.model);
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_FALSE(spec->training().has_distill_weight());
  EXPECT_FALSE(spec->has_weight_bits());
  EXPECT_FALSE(spec->training().has_epochs());
  EXPECT_FALSE(spec->training().has_seed());
  EXPECT_FALSE(spec->has_input_normalization());
  EXPECT_EQ(spec->weight_levels_size(), 0);
  EXPECT_EQ(spec->export_formats_size(), 0);
}

TEST(JobSpecFlagsTest, RefusesMalformedLevels) {
  JobSpecFlags f;
  f.weight_levels = "-1,zero,1";
  absl::StatusOr<v1::JobSpec> spec = BuildJobSpec(f, "zoo:lenet5");
  EXPECT_EQ(spec.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(spec.status().message()), HasSubstr("'zero'"));
  EXPECT_FALSE(ParseNumberList("1,nan", "--weight-levels").ok());
  EXPECT_FALSE(ParseNumberList("1e999", "--weight-levels").ok());
}

TEST(JobSpecFlagsTest, RefusesAnInputMeanWithoutItsStd) {
  JobSpecFlags f;
  f.input_mean = "0.5";
  absl::StatusOr<v1::JobSpec> spec = BuildJobSpec(f, "zoo:lenet5");
  EXPECT_EQ(spec.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(spec.status().message()), HasSubstr("--input-mean and --input-std"));
  f.input_std = "0.5,x";
  spec = BuildJobSpec(f, "zoo:lenet5");
  EXPECT_THAT(std::string(spec.status().message()), HasSubstr("--input-std: 'x'"));
}

TEST(JobSpecFlagsTest, ClassifiesModels) {
  EXPECT_TRUE(IsModelReference("zoo:resnet20"));
  EXPECT_TRUE(IsModelReference("sha256:00"));
  EXPECT_FALSE(IsModelReference("./net.pt"));
  EXPECT_FALSE(IsModelReference("net.pt"));
}

// The flags as a command line parses them, the way both commands bind them.
TEST(JobSpecFlagsTest, BindsTheCommandLine) {
  CLI::App app;
  JobSpecFlags f;
  BindJobSpecFlags(app, f, {.model_help = "model", .dataset_help = "dataset"});
  app.parse(
      "--model zoo:lenet5 --dataset mnist --epochs 0 --seed 9 --distill-weight 0.25 "
      "--export onnx,metrics --quantize-first-last",
      /*program_name_included=*/false);
  absl::StatusOr<v1::JobSpec> spec = BuildJobSpec(f, f.model);
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->model(), "zoo:lenet5");
  EXPECT_EQ(spec->dataset(), "mnist");
  EXPECT_TRUE(spec->training().has_epochs());  // 0 epochs is a setting
  EXPECT_EQ(spec->training().epochs(), 0);
  EXPECT_EQ(spec->training().seed(), 9u);
  EXPECT_DOUBLE_EQ(spec->training().distill_weight(), 0.25);
  EXPECT_TRUE(spec->training().quantize_first_last());
  EXPECT_THAT(spec->export_formats(), ElementsAre("onnx", "metrics"));
  EXPECT_TRUE(spec->input_shape().empty());
  EXPECT_FALSE(spec->preprocessing().has_random_resized_crop());
  EXPECT_FALSE(spec->preprocessing().has_holdout_fraction());
}

TEST(JobSpecFlagsTest, BindsInputShapeAndPreprocessing) {
  CLI::App app;
  JobSpecFlags f;
  BindJobSpecFlags(app, f, {.model_help = "model", .dataset_help = "dataset"});
  app.parse(
      "--model m.pt --dataset d --input-shape 3x32x32 --resize-size 36 --random-resized-crop off "
      "--crop-scale-min 0.5 --horizontal-flip on --holdout-fraction 0.2",
      /*program_name_included=*/false);
  absl::StatusOr<v1::JobSpec> spec = BuildJobSpec(f, f.model);
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->input_shape(), "3x32x32");
  const v1::Preprocessing& p = spec->preprocessing();
  EXPECT_EQ(p.resize_size(), 36);
  ASSERT_TRUE(p.has_random_resized_crop());
  EXPECT_FALSE(p.random_resized_crop());  // "off" is a setting, not "unset"
  EXPECT_DOUBLE_EQ(p.crop_scale_min(), 0.5);
  EXPECT_TRUE(p.has_horizontal_flip() && p.horizontal_flip());
  EXPECT_DOUBLE_EQ(p.holdout_fraction(), 0.2);
}

TEST(JobSpecTest, DefaultsAreResolvedInOnePlace) {
  v1::JobSpec spec;
  spec.set_model("zoo:lenet5");
  const v1::JobSpec d = WithDefaults(spec);
  EXPECT_EQ(d.weight_bits(), kDefaultWeightBits);
  EXPECT_EQ(d.training().epochs(), kDefaultEpochs);
  EXPECT_EQ(d.training().batch_size(), kDefaultBatchSize);
  EXPECT_EQ(d.training().seed(), kDefaultSeed);
  EXPECT_EQ(d.export_formats_size(), static_cast<int>(ExportFormats().size()));
  EXPECT_FALSE(d.training().has_distill_weight());  // the recipe's, resolved per phase
  // What the job says stays.
  spec.mutable_training()->set_epochs(0);
  spec.mutable_training()->set_seed(0);
  spec.add_weight_levels(-1);
  spec.add_weight_levels(1);
  spec.add_export_formats("onnx");
  const v1::JobSpec e = WithDefaults(spec);
  EXPECT_EQ(e.training().epochs(), 0);
  EXPECT_EQ(e.training().seed(), 0u);
  EXPECT_EQ(e.weight_bits(), 0);  // levels stand in for bits
  EXPECT_THAT(e.export_formats(), ElementsAre("onnx"));
}

v1::JobSpec ValidSpec() {
  v1::JobSpec spec;
  spec.set_model("zoo:resnet20");
  spec.set_dataset("fashion-mnist");
  spec.set_weight_bits(2);
  return spec;
}

TEST(JobSpecTest, ValidatesEverySetting) {
  EXPECT_TRUE(ValidateJobSpec(ValidSpec(), {}).ok());
  v1::JobSpec spec = ValidSpec();
  spec.set_weight_bits(9);
  spec.set_activation_bits(-1);
  spec.mutable_training()->set_epochs(1001);
  spec.mutable_training()->set_batch_size(70000);
  spec.mutable_training()->set_learning_rate(11);
  spec.mutable_training()->set_temperature_slope(kMaxTemperatureSlope + 1);
  spec.mutable_training()->set_distill_weight(2);
  spec.add_export_formats("tflite");
  const absl::Status s = ValidateJobSpec(spec, {});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  const std::string m(s.message());
  EXPECT_THAT(m, HasSubstr("weight_bits must be in 1..8 (got 9)"));
  EXPECT_THAT(m, HasSubstr("activation_bits (0 = float activations) must be in 0..8"));
  EXPECT_THAT(m, HasSubstr("training.epochs must be in 0..1000 (got 1001)"));
  EXPECT_THAT(m, HasSubstr("training.batch_size must be in 1..65536"));
  EXPECT_THAT(m, HasSubstr("training.learning_rate must be in 0..10"));
  EXPECT_THAT(m, HasSubstr("training.temperature_slope must be in 0..2000"));
  EXPECT_THAT(m, HasSubstr("training.distill_weight must be in 0..1"));
  EXPECT_THAT(m, HasSubstr("unknown export format \"tflite\"; choose from " + ExportFormatNames()));
}

TEST(JobSpecTest, LimitsBoundWhatOneJobCosts) {
  const ValidateOptions service{.limits = kServiceJobLimits};
  v1::JobSpec spec = ValidSpec();
  spec.set_priority(kServiceJobLimits.max_priority);
  spec.mutable_training()->set_epochs(kServiceJobLimits.max_epochs - 10);
  spec.mutable_training()->set_pretrain_epochs(10);
  spec.mutable_training()->set_batch_size(kServiceJobLimits.max_batch_size);
  spec.mutable_training()->set_max_train_samples(kServiceJobLimits.max_samples);
  EXPECT_TRUE(ValidateJobSpec(spec, service).ok()) << ValidateJobSpec(spec, service);

  spec.set_priority(INT32_MAX);
  spec.mutable_training()->set_epochs(1000);
  spec.mutable_training()->set_pretrain_epochs(1000);
  spec.mutable_training()->set_batch_size(65536);
  spec.mutable_training()->set_max_train_samples(int64_t{1} << 62);
  spec.mutable_training()->set_max_test_samples(int64_t{1} << 62);
  const std::string m(ValidateJobSpec(spec, service).message());
  EXPECT_THAT(m, HasSubstr("priority must be in -100..100 (got 2147483647)"));
  EXPECT_THAT(m, HasSubstr("training.epochs + training.pretrain_epochs must be at most 500 (got "
                           "1000 + 1000)"));
  EXPECT_THAT(m, HasSubstr("training.batch_size must be at most 4096 (got 65536)"));
  EXPECT_THAT(m, HasSubstr("training.max_train_samples must be at most 100000000"));
  EXPECT_THAT(m, HasSubstr("training.max_test_samples must be at most 100000000"));

  // The defaults count: 3 epochs and batches of 128 unless the job says otherwise.
  v1::JobSpec defaults = ValidSpec();
  EXPECT_THAT(std::string(ValidateJobSpec(defaults, {.limits = {.max_priority = 0,
                                                                .max_epochs = 2,
                                                                .max_batch_size = 64,
                                                                .max_samples = 0}})
                              .message()),
              AllOf(HasSubstr("must be at most 2 (got 3 + 0)"),
                    HasSubstr("training.batch_size must be at most 64 (got 128, the default)")));
  // Other processes take the schema's limits, which every job a server accepted is within.
  spec.set_priority(-kSchemaJobLimits.max_priority);
  spec.mutable_training()->set_max_train_samples(kSchemaJobLimits.max_samples);
  spec.mutable_training()->set_max_test_samples(0);
  EXPECT_TRUE(ValidateJobSpec(spec, {}).ok()) << ValidateJobSpec(spec, {});
}

TEST(JobSpecTest, RefusesASpecOverItsSizeLimit) {
  v1::JobSpec spec = ValidSpec();
  spec.set_input_shape(std::string(kMaxJobSpecBytes, 'x'));
  const absl::Status s = ValidateJobSpec(spec, {});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("bytes; at most 65536 bytes are accepted"));
}

TEST(JobSpecTest, BitsUnsetTakeTheDefaultButAnExplicitZeroIsRefused) {
  v1::JobSpec spec = ValidSpec();
  spec.clear_weight_bits();
  EXPECT_TRUE(ValidateJobSpec(spec, {}).ok());
  spec.set_weight_bits(0);
  EXPECT_THAT(std::string(ValidateJobSpec(spec, {}).message()),
              HasSubstr("weight_bits must be in 1..8 (got 0)"));
  spec.clear_weight_bits();
  spec.add_weight_levels(-1);
  spec.add_weight_levels(1);
  EXPECT_TRUE(ValidateJobSpec(spec, {}).ok());  // levels instead of bits
}

TEST(JobSpecTest, ModelsByWhereTheyComeFrom) {
  v1::JobSpec spec = ValidSpec();
  spec.set_model("zoo:nope");
  EXPECT_THAT(std::string(ValidateJobSpec(spec, {}).message()),
              HasSubstr("unknown zoo model \"zoo:nope\"; known: zoo:lenet5, zoo:resnet20"));
  spec.set_model("sha256:abc");
  EXPECT_THAT(std::string(ValidateJobSpec(spec, {}).message()), HasSubstr("is not a digest"));
  spec.set_model("/tmp/net.pt");  // a file: `qnet-worker run` only
  EXPECT_FALSE(ValidateJobSpec(spec, {}).ok());
  EXPECT_TRUE(ValidateJobSpec(spec, {.allow_model_path = true}).ok());
  spec.set_model("");
  EXPECT_THAT(std::string(ValidateJobSpec(spec, {.allow_model_path = true}).message()),
              HasSubstr("model is required"));
}

TEST(JobSpecTest, NamesAtMostTenProblems) {
  v1::JobSpec spec = ValidSpec();
  for (int i = 0; i < 4; ++i) spec.add_export_formats("x" + std::to_string(i));
  spec.set_weight_bits(20);
  spec.set_activation_bits(20);
  spec.mutable_training()->set_epochs(-1);
  spec.mutable_training()->set_pretrain_epochs(-1);
  spec.mutable_training()->set_batch_size(-1);
  spec.mutable_training()->set_learning_rate(-1);
  spec.mutable_training()->set_temperature_slope(-1);
  spec.mutable_training()->set_max_train_samples(-1);
  spec.mutable_training()->set_max_test_samples(-1);
  spec.mutable_training()->set_distill_weight(-1);
  spec.set_dataset("");
  // Ten named, the rest counted (a long export list stops being walked once ten are named).
  EXPECT_THAT(std::string(ValidateJobSpec(spec, {}).message()), HasSubstr("; and 1 more"));
}

TEST(JobSpecTest, InputShapes) {
  absl::StatusOr<InputShape> shape = ParseInputShape("3x224x160");
  ASSERT_TRUE(shape.ok()) << shape.status();
  EXPECT_EQ(*shape, (InputShape{3, 224, 160}));
  EXPECT_EQ(FormatInputShape(*shape), "3x224x160");
  for (const char* bad : {"", "3x32", "3x32x32x1", "3X32X32", "3x-1x32", "0x32x32", "5x32x32",
                          "3x32x4097", "3x32x", "3x 32x32", "3x99999999999x3"}) {
    EXPECT_EQ(ParseInputShape(bad).status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
  EXPECT_THAT(std::string(ParseInputShape("32x32").status().message()),
              HasSubstr("must be CxHxW, e.g. 3x32x32"));
  v1::JobSpec spec = ValidSpec();
  spec.set_input_shape("3x32x32");
  EXPECT_TRUE(ValidateJobSpec(spec, {}).ok());
  spec.set_input_shape("rgb");
  EXPECT_THAT(std::string(ValidateJobSpec(spec, {}).message()),
              HasSubstr("input_shape \"rgb\" must be CxHxW"));
}

TEST(JobSpecTest, ValidatesPreprocessing) {
  v1::JobSpec spec = ValidSpec();
  spec.mutable_preprocessing()->set_crop_scale_min(0.25);
  spec.mutable_preprocessing()->set_holdout_fraction(0.5);
  EXPECT_TRUE(ValidateJobSpec(spec, {}).ok());
  EXPECT_DOUBLE_EQ(WithDefaults(ValidSpec()).preprocessing().holdout_fraction(),
                   kDefaultHoldoutFraction);
  EXPECT_DOUBLE_EQ(WithDefaults(spec).preprocessing().holdout_fraction(), 0.5);
  spec.mutable_preprocessing()->set_crop_scale_min(0.8);
  spec.mutable_preprocessing()->set_crop_scale_max(0.5);
  spec.mutable_preprocessing()->set_holdout_fraction(0);
  spec.mutable_preprocessing()->set_resize_size(-1);
  const std::string m(ValidateJobSpec(spec, {}).message());
  EXPECT_THAT(m, HasSubstr("preprocessing.crop_scale_min..crop_scale_max must satisfy"));
  EXPECT_THAT(m, HasSubstr("preprocessing.holdout_fraction must be in (0, 0.9] (got 0)"));
  EXPECT_THAT(m, HasSubstr("preprocessing.resize_size must be in 0..8192 (got -1)"));
}

TEST(JobSpecTest, RequestIds) {
  EXPECT_TRUE(ValidateRequestId("").ok());
  EXPECT_TRUE(ValidateRequestId("3f2a-uuid-like_id.1").ok());
  EXPECT_EQ(ValidateRequestId(std::string(129, 'a')).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ValidateRequestId("has space").code(), absl::StatusCode::kInvalidArgument);
}

TEST(CatalogTest, CapabilitiesListTheCatalogAndLimits) {
  const v1::Capabilities c = Capabilities({"cifar10", "idx"});
  ASSERT_EQ(c.export_formats_size(), 4);
  EXPECT_EQ(c.export_formats(2).name(), "packed");
  EXPECT_THAT(c.export_formats(2).artifact_kinds(), ElementsAre("packed", "manifest"));
  EXPECT_THAT(c.dataset_formats(), ElementsAre("cifar10", "idx"));
  EXPECT_EQ(c.weight_bits().min(), kWeightBits.min);
  EXPECT_EQ(c.weight_bits().max(), kWeightBits.max);
  EXPECT_EQ(c.epochs().max(), kEpochs.max);
  // A server advertises its own narrower limits.
  const v1::Capabilities service = Capabilities({}, kServiceJobLimits);
  EXPECT_EQ(service.epochs().max(), kServiceJobLimits.max_epochs);
  EXPECT_EQ(service.batch_size().max(), kServiceJobLimits.max_batch_size);
  EXPECT_EQ(ExportFormatNames(), "torchscript, onnx, packed, metrics");
  EXPECT_EQ(ZooModelNames(), "zoo:lenet5, zoo:resnet20");
  ASSERT_NE(FindZooModel("zoo:lenet5"), nullptr);
  EXPECT_EQ(FindZooModel("zoo:lenet5")->input_shape(), "1x28x28");
}

}  // namespace
}  // namespace qnet::job
