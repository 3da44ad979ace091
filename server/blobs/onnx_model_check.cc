#include "server/blobs/onnx_model_check.h"

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <optional>

#include "absl/strings/str_cat.h"

namespace qnet::server {
namespace {

// ModelProto's field numbers: ir_version, producer_name/version, domain, model_version,
// doc_string, graph, opset_import, metadata_props, training_info, functions, configuration.
bool IsModelField(uint64_t field) {
  return (field >= 1 && field <= 8) || field == 14 || field == 20 || field == 25 || field == 26;
}

constexpr int kMaxFields = 100000;  // opset imports and metadata entries: a handful in practice
constexpr uint64_t kIrVersion = 1, kGraph = 7;

std::optional<uint64_t> ReadVarint(std::istream& in) {
  uint64_t value = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    const int byte = in.get();
    if (byte == std::char_traits<char>::eof()) return std::nullopt;
    value |= static_cast<uint64_t>(byte & 0x7f) << shift;
    if ((byte & 0x80) == 0) return value;
  }
  return std::nullopt;
}

absl::Status NotOnnx(const std::string& why) {
  return absl::InvalidArgumentError(absl::StrCat("not an ONNX model (", why, ")"));
}

}  // namespace

absl::Status CheckOnnxModel(const std::string& path) {
  std::error_code ec;
  const uintmax_t size = std::filesystem::file_size(path, ec);
  std::ifstream in(path, std::ios::binary);
  if (ec || !in) return NotOnnx("cannot be read");
  bool ir_version = false, graph = false;
  uint64_t at = 0;
  for (int fields = 0; at < size; ++fields) {
    if (fields == kMaxFields) return NotOnnx("too many top-level fields");
    const std::optional<uint64_t> tag = ReadVarint(in);
    if (!tag || !IsModelField(*tag >> 3)) {
      return NotOnnx(absl::StrCat("byte ", at, " does not start a ModelProto field"));
    }
    const uint64_t field = *tag >> 3, wire = *tag & 7;
    uint64_t skip = 0;
    if (wire == 0) {
      if (!ReadVarint(in)) return NotOnnx(absl::StrCat("truncated at byte ", at));
    } else if (wire == 2) {
      const std::optional<uint64_t> length = ReadVarint(in);
      if (!length) return NotOnnx(absl::StrCat("truncated at byte ", at));
      skip = *length;
    } else {
      return NotOnnx(absl::StrCat("field ", field, " at byte ", at, " has the wrong wire type"));
    }
    const auto pos = static_cast<uint64_t>(in.tellg());
    if (skip > size - pos) return NotOnnx(absl::StrCat("field ", field, " runs past the end"));
    ir_version = ir_version || (field == kIrVersion && wire == 0);
    graph = graph || (field == kGraph && wire == 2 && skip > 0);
    at = pos + skip;
    in.seekg(static_cast<std::streamoff>(at));
  }
  if (!ir_version || !graph) return NotOnnx("no ir_version or no graph");
  return absl::OkStatus();
}

}  // namespace qnet::server
