// Fuzz target: the ONNX importer (protobuf parse, graph checks, tensor reads, every op handler and
// the TorchScript it writes) on arbitrary bytes. Refusing is fine; crashing, throwing or an
// imported module without a forward is not. The corpus holds the hand-written graph of every op
// and small malformed graphs (make_onnx_models.py writes them).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "workers/engine/model_source/onnx/importer.h"
#include "workers/engine/model_source/onnx/onnx_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace qnet::engine::onnx_import;
  // A folder that does not exist: external data in the input cannot reach the file system.
  absl::StatusOr<OnnxFile> file =
      ParseOnnx(std::string_view(reinterpret_cast<const char*>(data), size),
                "/nonexistent/onnx-fuzz", "fuzz input");
  if (!file.ok()) return 0;
  absl::StatusOr<ImportedModel> model = ImportOnnx(*file);
  if (model.ok() && model->module.find_method("forward") == std::nullopt) std::abort();
  return 0;
}
