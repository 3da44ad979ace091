// What qnetd advertises (the Torch-free catalog, GetCapabilities) against what this worker
// implements (the engine's registries): a name on one side only is a job that is accepted and
// then fails, or an implementation no job can reach.
#include <set>
#include <string>

#include <gtest/gtest.h>

#include "common/job/catalog.h"
#include "common/registry.h"
#include "workers/engine/export/export_writer.h"

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

}  // namespace
}  // namespace qnet::engine
