// Fuzz target: one dataset format (QNET_FUZZ_FORMAT, e.g. "idx"; tests/datasets/CMakeLists.txt
// builds one target per format) read whole from files on disk, as qnetd inspects an upload and
// the engine reads it: Detect, Inspect, Read, and Open with every image decoded.
//
// The input is the dataset. For the single-file formats (archive, npz) it is that file. For the
// folder formats it is a list of files, each "relative/path\n" then its bytes, separated by
// kFileSeparator; a path that is not plain ("..", absolute, odd characters) is skipped.
//
// Besides never crashing or allocating past the caps, what the format reports must hold
// together: counts, shapes and labels of a read dataset match its summary and class count.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "datasets/dataset_format.h"
#include "tests/fuzz/scratch_dir.h"

namespace {

using namespace qnet::datasets;

constexpr absl::string_view kFileSeparator = "\n--qnet-fuzz-file--\n";
constexpr int64_t kMaxImagesDecoded = 64;  // per split: one input stays fast

bool IsSingleFile(absl::string_view format) { return format == "archive" || format == "npz"; }

bool IsPlainPath(absl::string_view path) {
  if (path.empty() || path.size() > 200) return false;
  for (absl::string_view part : absl::StrSplit(path, '/')) {
    if (part.empty() || part == "." || part == "..") return false;
    for (char c : part) {
      if (!absl::ascii_isalnum(c) && c != '_' && c != '-' && c != '.') return false;
    }
  }
  return true;
}

// Writes the input as the dataset; returns what to hand the format (the folder or the file).
std::string WriteDataset(const qnet::fuzz::ScratchDir& dir, absl::string_view input) {
  dir.Clear();
  if (IsSingleFile(QNET_FUZZ_FORMAT)) return dir.Write("dataset", input);
  for (absl::string_view file : absl::StrSplit(input, kFileSeparator)) {
    const size_t newline = file.find('\n');
    if (newline == absl::string_view::npos) continue;
    const absl::string_view path = file.substr(0, newline);
    if (IsPlainPath(path)) dir.Write(std::string(path), file.substr(newline + 1));
  }
  return dir.path();
}

void CheckSplit(const SplitReader& split, int64_t num_classes) {
  for (int64_t i = 0; i < split.size(); ++i) {
    if (split.label(i) < 0 || split.label(i) >= num_classes) std::abort();
    if (i >= kMaxImagesDecoded) continue;
    absl::StatusOr<Image> image = split.Decode(i);
    if (image.ok() && image->pixels.size() != static_cast<size_t>(image->shape.pixels())) {
      std::abort();
    }
    split.Shape(i).IgnoreError();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const DatasetFormat* const format = FindDatasetFormat(QNET_FUZZ_FORMAT);
  static const qnet::fuzz::ScratchDir dir;
  if (format == nullptr) std::abort();  // the format did not register
  const std::string path =
      WriteDataset(dir, absl::string_view(reinterpret_cast<const char*>(data), size));
  format->Detect(path);
  absl::StatusOr<DatasetSummary> summary = format->Inspect(path);
  if (summary.ok() && summary->num_classes != static_cast<int64_t>(summary->class_names.size())) {
    std::abort();
  }
  if (absl::StatusOr<RawDataset> raw = format->Read(path); raw.ok()) {
    for (const RawSplit* split : {&raw->train, &raw->test}) {
      if (split->pixels.size() != static_cast<size_t>(split->size() * split->shape.pixels())) {
        std::abort();
      }
      if (!CheckLabels("", split->labels, raw->num_classes).ok()) std::abort();
    }
    if (summary.ok() &&
        (summary->shape != raw->shape() ||
         (summary->train_images >= 0 && summary->train_images != raw->train.size()))) {
      std::abort();
    }
  }
  if (absl::StatusOr<DatasetReader> reader = format->Open(path); reader.ok()) {
    if (reader->train == nullptr) std::abort();
    CheckSplit(*reader->train, reader->num_classes);
    if (reader->test != nullptr) CheckSplit(*reader->test, reader->num_classes);
  }
  return 0;
}
