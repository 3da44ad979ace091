// What qnetd advertises (the Torch-free catalog, GetCapabilities) against what this worker
// implements (the engine's registries): a name on one side only is a job that is accepted and
// then fails, or an implementation no job can reach.
#include <set>
#include <string>

#include <gtest/gtest.h>

#include "common/job/catalog.h"
#include "common/registry.h"
#include "workers/engine/export/export_writer.h"
#include "workers/engine/model_source/model_source.h"
#include "workers/engine/zoo/zoo_builder.h"

namespace qnet::engine {
namespace {

template <typename T>
std::set<std::string> Registered() {
  const std::vector<std::string> names = Registry<T>::Global().Names();
  return {names.begin(), names.end()};
}

TEST(RegistryTest, EveryAdvertisedExportFormatHasAWriterAndNoWriterIsHidden) {
  std::set<std::string> advertised;
  for (const v1::ExportFormat& f : job::ExportFormats()) advertised.insert(f.name());
  EXPECT_EQ(advertised, Registered<ExportWriter>());
  EXPECT_FALSE(advertised.empty());
}

TEST(RegistryTest, EveryAdvertisedZooModelHasABuilderAndNoBuilderIsHidden) {
  std::set<std::string> advertised;
  for (const v1::Model& m : job::ZooModels()) advertised.insert(m.name());
  std::set<std::string> built;
  for (const std::string& name : Registered<ZooModel>()) built.insert("zoo:" + name);
  EXPECT_EQ(advertised, built);
}

// JobSpec.model schemes qnetd accepts reach a source: zoo names directly, blob digests as the
// cached file the worker resolves them to (TorchScript, or ONNX when its bytes are a ModelProto).
TEST(RegistryTest, ModelSourcesClaimWhatQnetdAccepts) {
  EXPECT_EQ(Registered<ModelSource>(), (std::set<std::string>{"onnx", "torchscript", "zoo"}));
  EXPECT_FALSE(Registry<ModelSource>::Global().Find("onnx")->claims("zoo:lenet5"));
  const ModelSource& zoo = *Registry<ModelSource>::Global().Find("zoo");
  const ModelSource& file = *Registry<ModelSource>::Global().Find("torchscript");
  EXPECT_TRUE(zoo.claims("zoo:lenet5"));
  EXPECT_FALSE(zoo.claims("/cache/sha256/ab"));
  EXPECT_TRUE(file.claims("/cache/sha256/ab"));
  EXPECT_FALSE(file.claims("zoo:lenet5"));
  absl::StatusOr<std::unique_ptr<OpenedModel>> m = OpenModel("zoo:nope");
  ASSERT_TRUE(m.ok()) << m.status();  // the name is checked when the model is built
  EXPECT_TRUE(absl::IsInvalidArgument((*m)->Instantiate(1, 10, 1).status()));
}

}  // namespace
}  // namespace qnet::engine
