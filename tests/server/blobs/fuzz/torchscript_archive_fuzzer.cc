// Fuzz target: the structural check qnetd runs on an uploaded model (server/blobs/
// torchscript_archive.h), minizip walking the ZIP records (end of central directory, ZIP64, entry
// names, extra fields) of a file a client wrote. Any bytes give OK or INVALID_ARGUMENT, and the
// verdict does not depend on how often the check ran.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "absl/strings/string_view.h"
#include "server/blobs/torchscript_archive.h"
#include "tests/fuzz/scratch_dir.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const qnet::fuzz::ScratchDir dir;
  const std::string path =
      dir.Write("model.pt", absl::string_view(reinterpret_cast<const char*>(data), size));
  const absl::Status status = qnet::server::CheckTorchScriptArchive(path);
  if (!status.ok() && !absl::IsInvalidArgument(status)) std::abort();
  if (qnet::server::CheckTorchScriptArchive(path) != status) std::abort();
  return 0;
}
