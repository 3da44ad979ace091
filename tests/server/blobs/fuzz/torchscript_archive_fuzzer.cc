// Fuzz target: the TorchScript archive check of uploaded models (minizip over a file). Any input
// is OK or INVALID_ARGUMENT, never a crash, and the check's verdict does not depend on how often
// it ran.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/status/status.h"
#include "server/blobs/torchscript_archive.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = "/tmp/torchscript_archive_fuzz." + std::to_string(::getpid());
  FILE* file = std::fopen(path.c_str(), "wb");
  if (file == nullptr || std::fwrite(data, 1, size, file) != size || std::fclose(file) != 0) {
    std::abort();
  }
  const absl::Status first = qnet::server::CheckTorchScriptArchive(path);
  if (!first.ok() && !absl::IsInvalidArgument(first)) std::abort();
  if (qnet::server::CheckTorchScriptArchive(path) != first) std::abort();
  std::remove(path.c_str());
  return 0;
}
