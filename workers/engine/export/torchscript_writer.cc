// "torchscript": the hard module as RunJob saved it (model.pt), which loads in stock PyTorch.
#include <filesystem>

#include "workers/engine/export/export_writer.h"

namespace qnet::engine {
namespace {

absl::Status WriteTorchScript(ExportContext& c) {
  return c.AddArtifact("torchscript", c.saved_module.filename().string());
}

}  // namespace

QNET_REGISTER(ExportWriter, "torchscript", ExportWriter{&WriteTorchScript});

}  // namespace qnet::engine
