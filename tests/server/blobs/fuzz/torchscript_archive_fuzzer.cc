// Fuzz target: the structural check qnetd runs on an uploaded model (server/blobs/
// torchscript_archive.h), which walks ZIP records (local header, end of central directory,
// ZIP64, entry names) of a file a client wrote. Any bytes give OK or INVALID_ARGUMENT.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "absl/strings/string_view.h"
#include "server/blobs/torchscript_archive.h"
#include "tests/fuzz/scratch_dir.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const qnet::fuzz::ScratchDir dir;
  const absl::Status status = qnet::server::CheckTorchScriptArchive(
      dir.Write("model.pt", absl::string_view(reinterpret_cast<const char*>(data), size)));
  if (!status.ok() && !absl::IsInvalidArgument(status)) std::abort();
  return 0;
}
