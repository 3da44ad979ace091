#include "workers/engine/model_source/onnx/onnx_file.h"

#include <cstring>
#include <fstream>
#include <limits>
#include <map>
#include <set>
#include <unordered_map>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace qnet::engine::onnx_import {
namespace {

namespace fs = std::filesystem;
using qnet_onnx::TensorProto;

// The bytes a model file may have: protobuf's own limit on one message.
constexpr uintmax_t kMaxModelBytes = uintmax_t{2} << 30;

absl::Status Invalid(const std::string& what, const std::string& message) {
  return absl::InvalidArgumentError(absl::StrCat(what, ": ", message));
}

struct DType {
  torch::ScalarType scalar;
  size_t bytes;
};

// The ONNX element types a classifier's tensors use.
absl::StatusOr<DType> DTypeOf(int32_t onnx_type, const std::string& tensor) {
  switch (onnx_type) {
    case TensorProto::FLOAT:
      return DType{torch::kFloat32, 4};
    case TensorProto::DOUBLE:
      return DType{torch::kFloat64, 8};
    case TensorProto::FLOAT16:
      return DType{torch::kFloat16, 2};
    case TensorProto::INT8:
      return DType{torch::kInt8, 1};
    case TensorProto::UINT8:
      return DType{torch::kUInt8, 1};
    case TensorProto::INT16:
      return DType{torch::kInt16, 2};
    case TensorProto::INT32:
      return DType{torch::kInt32, 4};
    case TensorProto::INT64:
      return DType{torch::kInt64, 8};
    case TensorProto::BOOL:
      return DType{torch::kBool, 1};
    default:
      return absl::InvalidArgumentError(absl::StrCat("tensor '", tensor, "' has element type ",
                                                     onnx_type,
                                                     ", which the importer does not "
                                                     "read (float, int and bool types only)"));
  }
}

// The external data of `proto` read from its file in `dir`, which must stay inside `dir`.
absl::StatusOr<std::string> ReadExternalData(const TensorProto& proto, const fs::path& dir,
                                             size_t want_bytes) {
  std::string location;
  uint64_t offset = 0;
  bool has_length = false;
  uint64_t length = 0;
  for (const qnet_onnx::StringStringEntryProto& e : proto.external_data()) {
    try {
      if (e.key() == "location") location = e.value();
      if (e.key() == "offset") offset = std::stoull(e.value());
      if (e.key() == "length") length = std::stoull(e.value()), has_length = true;
    } catch (const std::exception&) {
      return absl::InvalidArgumentError(absl::StrCat("tensor '", proto.name(), "': external data ",
                                                     e.key(), " '", e.value(),
                                                     "' is not a number"));
    }
  }
  const fs::path rel(location);
  if (location.empty() || rel.is_absolute() || absl::StrContains(location, "..")) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor '", proto.name(), "': external data location '", location,
                     "' must be a file name relative to the model's folder"));
  }
  std::error_code ec;
  const fs::path base = fs::weakly_canonical(dir, ec);
  const fs::path file = fs::weakly_canonical(dir / rel, ec);
  if (ec || !absl::StartsWith(file.string(), (base / "").string())) {
    return absl::InvalidArgumentError(absl::StrCat("tensor '", proto.name(), "': external data '",
                                                   location, "' lies outside the model's folder"));
  }
  if (has_length && length != want_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor '", proto.name(), "': external data length ", length,
                     " does not match its shape (", want_bytes, " bytes)"));
  }
  const uintmax_t size = fs::file_size(file, ec);
  if (ec || offset > size || size - offset < want_bytes) {
    return absl::InvalidArgumentError(absl::StrCat("tensor '", proto.name(), "': external data '",
                                                   location, "' is missing or shorter than offset ",
                                                   offset, " + ", want_bytes, " bytes"));
  }
  std::ifstream in(file, std::ios::binary);
  in.seekg(static_cast<std::streamoff>(offset));
  std::string bytes(want_bytes, '\0');
  in.read(bytes.data(), static_cast<std::streamsize>(want_bytes));
  if (!in) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor '", proto.name(), "': cannot read external data '", location, "'"));
  }
  return bytes;
}

// Values stored in a repeated field (float_data, int32_data, ...), converted to `dtype`.
template <typename Field>
torch::Tensor FromField(const Field& field, torch::ScalarType field_type, torch::ScalarType dtype,
                        const std::vector<int64_t>& shape) {
  using T = typename Field::value_type;
  std::vector<T> values(field.begin(), field.end());
  return torch::from_blob(values.data(), {static_cast<int64_t>(values.size())},
                          torch::TensorOptions().dtype(field_type))
      .clone()
      .to(dtype)
      .reshape(shape);
}

// Checks that every node input is defined and the graph has no cycle, and orders the nodes
// (an iterative depth-first search: a crafted graph must not overflow the stack).
absl::Status CheckAndOrder(OnnxFile& f, const std::string& what) {
  const qnet_onnx::GraphProto& g = f.model.graph();
  std::set<std::string> defined;
  for (const auto& in : g.input()) defined.insert(in.name());
  for (const auto& init : g.initializer()) defined.insert(init.name());
  std::unordered_map<std::string, int> producer;
  for (int i = 0; i < g.node_size(); ++i) {
    for (const std::string& out : g.node(i).output()) {
      if (out.empty()) continue;
      if (defined.count(out) != 0 || !producer.emplace(out, i).second) {
        return Invalid(what, absl::StrCat("value '", out, "' is defined twice (again by node ",
                                          NodeLabel(g.node(i)), ")"));
      }
    }
  }
  // 0: not visited, 1: on the current path, 2: ordered.
  std::vector<int> state(static_cast<size_t>(g.node_size()), 0);
  for (int root = 0; root < g.node_size(); ++root) {
    if (state[static_cast<size_t>(root)] != 0) continue;
    std::vector<std::pair<int, int>> stack{{root, 0}};  // node, next input to look at
    state[static_cast<size_t>(root)] = 1;
    while (!stack.empty()) {
      auto& [node, next] = stack.back();
      const qnet_onnx::NodeProto& n = g.node(node);
      if (next == n.input_size()) {
        state[static_cast<size_t>(node)] = 2;
        f.order.push_back(&n);
        stack.pop_back();
        continue;
      }
      const std::string& in = n.input(next++);
      if (in.empty() || defined.count(in) != 0) continue;
      const auto p = producer.find(in);
      if (p == producer.end()) {
        return Invalid(what, absl::StrCat("node ", NodeLabel(n), " reads '", in,
                                          "', which is no graph input, initializer or node "
                                          "output (a missing initializer?)"));
      }
      const int s = state[static_cast<size_t>(p->second)];
      if (s == 1) {
        return Invalid(what, absl::StrCat("the graph has a cycle: node ", NodeLabel(n), " reads '",
                                          in, "', which depends on its own output"));
      }
      if (s == 0) {
        state[static_cast<size_t>(p->second)] = 1;
        stack.emplace_back(p->second, 0);
      }
    }
  }
  for (const auto& out : g.output()) {
    if (defined.count(out.name()) == 0 && producer.count(out.name()) == 0) {
      return Invalid(what, absl::StrCat("graph output '", out.name(), "' is produced by no node"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

bool LooksLikeOnnx(std::string_view first_bytes) {
  // The first field's tag (one byte for every ModelProto field below 16): ir_version or
  // model_version as a varint, or another field length-delimited. Text, ZIP archives and most
  // other formats start otherwise and are left to the other sources.
  if (first_bytes.empty()) return false;
  const auto tag = static_cast<unsigned char>(first_bytes[0]);
  const int field = tag >> 3, wire = tag & 7;
  if (field == 1 || field == 5) return wire == 0;
  return wire == 2 && ((field >= 2 && field <= 8) || field == 14);
}

std::string NodeLabel(const qnet_onnx::NodeProto& node) {
  if (!node.name().empty()) return absl::StrCat("'", node.name(), "' (", node.op_type(), ")");
  return absl::StrCat(node.op_type(), " writing '", node.output_size() > 0 ? node.output(0) : "",
                      "'");
}

absl::StatusOr<OnnxFile> ParseOnnx(std::string_view bytes, const fs::path& dir,
                                   const std::string& what) {
  OnnxFile f;
  f.dir = dir;
  if (bytes.empty() || !f.model.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    return Invalid(what,
                   "is not a valid ONNX model: its ModelProto protobuf does not parse (the "
                   "file may be truncated or damaged); export it again");
  }
  if (!f.model.has_graph() || f.model.graph().node_size() == 0) {
    return Invalid(what, "is not an ONNX model: it has no graph nodes");
  }
  for (const qnet_onnx::OperatorSetIdProto& set : f.model.opset_import()) {
    if (set.domain().empty() || set.domain() == "ai.onnx") f.opset = set.version();
  }
  if (f.opset < kMinOpset) {
    return Invalid(what, absl::StrCat("ONNX opset ", f.opset, " is older than ", kMinOpset,
                                      ", the oldest the importer reads; export with "
                                      "opset_version=",
                                      kMinOpset, " or later"));
  }
  if (absl::Status s = CheckAndOrder(f, what); !s.ok()) return s;
  return f;
}

absl::StatusOr<OnnxFile> ReadOnnxFile(const std::string& path) {
  const std::string what = absl::StrCat("model file ", path);
  std::error_code ec;
  const uintmax_t size = fs::file_size(path, ec);
  if (ec) return Invalid(what, "cannot be read");
  if (size >= kMaxModelBytes) {
    return Invalid(what,
                   "is larger than 2 GiB, the most one ONNX protobuf holds; save the "
                   "weights as external data next to the model");
  }
  std::ifstream in(path, std::ios::binary);
  std::string bytes(static_cast<size_t>(size), '\0');
  in.read(bytes.data(), static_cast<std::streamsize>(size));
  if (!in) return Invalid(what, "cannot be read");
  return ParseOnnx(bytes, fs::path(path).parent_path(), what);
}

absl::StatusOr<torch::Tensor> TensorFromProto(const TensorProto& proto, const fs::path& dir) {
  absl::StatusOr<DType> type = DTypeOf(proto.data_type(), proto.name());
  if (!type.ok()) return type.status();
  std::vector<int64_t> shape(proto.dims().begin(), proto.dims().end());
  int64_t numel = 1;
  for (const int64_t d : shape) {
    if (d < 0 || (d > 0 && numel > kMaxTensorElements / d)) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor '", proto.name(), "' has a negative or too large shape"));
    }
    numel *= d;
  }
  const size_t want = static_cast<size_t>(numel) * type->bytes;
  auto from_bytes = [&](const std::string& bytes) -> absl::StatusOr<torch::Tensor> {
    if (bytes.size() != want) {
      return absl::InvalidArgumentError(absl::StrCat(
          "tensor '", proto.name(), "' holds ", bytes.size(), " bytes; its shape needs ", want));
    }
    torch::Tensor t = torch::empty(shape, torch::TensorOptions().dtype(type->scalar));
    if (want > 0) std::memcpy(t.data_ptr(), bytes.data(), want);
    return t;
  };
  if (proto.data_location() == TensorProto::EXTERNAL) {
    absl::StatusOr<std::string> bytes = ReadExternalData(proto, dir, want);
    if (!bytes.ok()) return bytes.status();
    return from_bytes(*bytes);
  }
  if (proto.has_raw_data()) return from_bytes(proto.raw_data());
  auto check_count = [&](int count) -> absl::Status {
    if (count == numel) return absl::OkStatus();
    return absl::InvalidArgumentError(absl::StrCat("tensor '", proto.name(), "' holds ", count,
                                                   " values; its shape needs ", numel));
  };
  absl::Status s;
  switch (proto.data_type()) {
    case TensorProto::FLOAT:
      if (s = check_count(proto.float_data_size()); !s.ok()) return s;
      return FromField(proto.float_data(), torch::kFloat32, type->scalar, shape);
    case TensorProto::DOUBLE:
      if (s = check_count(proto.double_data_size()); !s.ok()) return s;
      return FromField(proto.double_data(), torch::kFloat64, type->scalar, shape);
    case TensorProto::INT64:
      if (s = check_count(proto.int64_data_size()); !s.ok()) return s;
      return FromField(proto.int64_data(), torch::kInt64, type->scalar, shape);
    case TensorProto::FLOAT16: {
      if (s = check_count(proto.int32_data_size()); !s.ok()) return s;
      // int32_data holds each half's bit pattern.
      return FromField(proto.int32_data(), torch::kInt32, torch::kInt16, shape)
          .view(torch::kFloat16);
    }
    default:
      if (s = check_count(proto.int32_data_size()); !s.ok()) return s;
      return FromField(proto.int32_data(), torch::kInt32, type->scalar, shape);
  }
}

}  // namespace qnet::engine::onnx_import
