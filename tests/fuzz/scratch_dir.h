// A folder for fuzz targets whose code under test reads files, not memory: made once per process
// (in /dev/shm, else $TMPDIR), emptied before each input, removed at exit.
//
//   static ScratchDir dir;
//   dir.Clear();
//   dir.Write("train-images-idx3-ubyte", bytes);
//   format->Inspect(dir.path());
#ifndef QNET_TESTS_FUZZ_SCRATCH_DIR_H_
#define QNET_TESTS_FUZZ_SCRATCH_DIR_H_

#include <stdlib.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "absl/strings/string_view.h"

namespace qnet::fuzz {

class ScratchDir {
 public:
  ScratchDir() {
    // Memory-backed when the machine has /dev/shm: the code under test fsyncs, and a fuzzer
    // runs thousands of inputs a second.
    std::error_code ec;
    const std::filesystem::path root = std::filesystem::is_directory("/dev/shm", ec)
                                           ? std::filesystem::path("/dev/shm")
                                           : std::filesystem::temp_directory_path();
    std::string pattern = (root / "qnet-fuzz-XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) std::abort();  // no scratch space: nothing to test
    path_ = pattern;
  }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;

  const std::string& path() const { return path_; }

  void Clear() const {
    for (const auto& entry : std::filesystem::directory_iterator(path_)) {
      std::filesystem::remove_all(entry.path());
    }
  }

  // Writes `data` to path()/name (a relative path), creating its folders; returns the full path,
  // or "" when a file already stands where a folder must go.
  std::string Write(const std::string& name, absl::string_view data) const {
    const std::filesystem::path file = std::filesystem::path(path_) / name;
    std::error_code ec;
    std::filesystem::create_directories(file.parent_path(), ec);
    if (ec) return "";
    std::ofstream(file, std::ios::binary)
        .write(data.data(), static_cast<std::streamsize>(data.size()));
    return file.string();
  }

 private:
  std::string path_;
};

}  // namespace qnet::fuzz

#endif  // QNET_TESTS_FUZZ_SCRATCH_DIR_H_
