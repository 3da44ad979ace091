#include "workers/engine/export/export.h"
#include "workers/engine/torch_error.h"

#include <cstring>
#include <exception>
#include <fstream>
#include <iterator>
#include <set>
#include <sstream>
#include <utility>

#include <zlib.h>

#include "absl/strings/str_cat.h"
#include "common/atomic_file.h"
#include "common/digest.h"
#include "common/input_normalization.h"

namespace qnet::engine {
namespace {

constexpr char kMagic[] = "QNETPK02";
constexpr size_t kMagicSize = 8;
// The header is zlib-compressed: as plain JSON, a small network's many tensor names and offsets
// would add tens of percent to its size (docs/METHOD.md, "Artifacts").
constexpr size_t kHeaderStart = kMagicSize + 16;

void AppendUint64(std::string& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

uint64_t ReadUint64(std::string_view bytes) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i)
    v |= static_cast<uint64_t>(static_cast<unsigned char>(bytes[i])) << (8 * i);
  return v;
}

absl::StatusOr<std::string> Deflate(const std::string& text) {
  uLongf size = compressBound(static_cast<uLong>(text.size()));
  std::string out(size, '\0');
  if (compress2(reinterpret_cast<Bytef*>(out.data()), &size,
                reinterpret_cast<const Bytef*>(text.data()), static_cast<uLong>(text.size()),
                Z_BEST_COMPRESSION) != Z_OK) {
    return absl::InternalError("cannot compress the packed model's header");
  }
  out.resize(size);
  return out;
}

std::optional<std::string> Inflate(std::string_view compressed, uint64_t size) {
  if (size > (uint64_t{1} << 32)) return std::nullopt;
  std::string out(size, '\0');
  uLongf got = static_cast<uLongf>(size);
  if (uncompress(reinterpret_cast<Bytef*>(out.data()), &got,
                 reinterpret_cast<const Bytef*>(compressed.data()),
                 static_cast<uLong>(compressed.size())) != Z_OK ||
      got != size) {
    return std::nullopt;
  }
  return out;
}

const std::vector<std::pair<std::string, torch::ScalarType>>& DtypeNames() {
  static const auto* names = new std::vector<std::pair<std::string, torch::ScalarType>>{
      {"float32", torch::kFloat},     {"float64", torch::kDouble}, {"float16", torch::kHalf},
      {"bfloat16", torch::kBFloat16}, {"int64", torch::kLong},     {"int32", torch::kInt},
      {"int16", torch::kShort},       {"int8", torch::kChar},      {"uint8", torch::kByte},
      {"bool", torch::kBool}};
  return *names;
}

std::optional<std::string> DtypeName(torch::ScalarType t) {
  for (const auto& [name, type] : DtypeNames()) {
    if (type == t) return name;
  }
  return std::nullopt;
}

std::optional<torch::ScalarType> DtypeFromName(const std::string& n) {
  for (const auto& [name, type] : DtypeNames()) {
    if (name == n) return type;
  }
  return std::nullopt;
}

std::string TensorBytes(const torch::Tensor& t) {
  const torch::Tensor c = t.detach().cpu().contiguous();
  return std::string(static_cast<const char*>(c.data_ptr()), c.numel() * c.element_size());
}

std::pair<std::string, std::string> SplitLast(const std::string& path) {
  const size_t dot = path.rfind('.');
  if (dot == std::string::npos) return {"", path};
  return {path.substr(0, dot), path.substr(dot + 1)};
}

}  // namespace

absl::StatusOr<torch::jit::Module> BuildHardModule(const torch::jit::Module& float_model,
                                                   QuantizedModel& quantized) {
  try {
    torch::NoGradGuard no_grad;
    torch::jit::Module out = float_model.clone();
    // Trained values, by name; quantized weights hard.
    std::map<std::string, torch::Tensor> values;
    for (const auto& p : quantized.module().named_parameters(true)) values[p.name] = p.value;
    for (const auto& b : quantized.module().named_buffers(true)) values[b.name] = b.value;
    std::set<std::string> quantized_layers;
    for (const QuantizedLayer& l : quantized.layers()) {
      values[l.name + ".weight"] = l.alpha.detach() * l.levels.index({quantized.HardCodes(l)});
      quantized_layers.insert(l.name);
    }
    std::vector<std::pair<std::string, torch::Tensor>> targets;
    for (const auto& p : out.named_parameters(true)) targets.emplace_back(p.name, p.value);
    for (const auto& b : out.named_buffers(true)) targets.emplace_back(b.name, b.value);
    for (const auto& [name, old] : targets) {
      auto it = values.find(name);
      if (it == values.end()) continue;
      const auto [owner, attr] = SplitLast(name);
      absl::StatusOr<torch::jit::Module> m = SubmoduleAt(out, owner);
      if (!m.ok()) return m.status();
      m->setattr(attr, it->second.detach().to(old.device(), old.scalar_type()).clone());
    }
    for (const QuantizedLayer& l : quantized.layers()) {
      absl::StatusOr<torch::jit::Module> m = SubmoduleAt(out, l.name);
      if (!m.ok()) return m.status();
      m->register_attribute("qnet_alpha", c10::FloatType::get(), l.alpha.item<double>());
      m->register_attribute("qnet_levels", c10::TensorType::get(),
                            l.levels.detach().to(torch::kFloat).clone());
    }
    // A float layer sharing its class with a quantized one must fill the new slots too:
    // qnet_alpha 0 and no levels mark it as not quantized.
    for (const LayerRef& ref : FindQuantizableLayers(out, true)) {
      if (quantized_layers.count(ref.name) != 0 || !ref.module.type()->hasAttribute("qnet_alpha")) {
        continue;
      }
      torch::jit::Module m = ref.module;
      m.register_attribute("qnet_alpha", c10::FloatType::get(), 0.0);
      m.register_attribute("qnet_levels", c10::TensorType::get(), torch::zeros({0}));
    }
    const std::vector<ActivationQuantizer>& acts = quantized.activation_quantizers();
    if (!acts.empty()) {
      std::vector<std::string> layers;
      for (const ActivationQuantizer& a : acts) layers.push_back(a.layer);
      const torch::jit::Module prototype = MakeActivationQuantizerModule(
          QuantizerFlavour::kExport, acts.front().levels, acts.front().thresholds, 1.0, 1.0);
      absl::StatusOr<std::vector<std::string>> names = InsertActivationQuantizers(
          out, layers, [&](const std::string&) { return prototype.deepcopy(); });
      if (!names.ok()) return names.status();
      for (size_t i = 0; i < acts.size(); ++i) {
        if ((*names)[i].empty()) continue;
        absl::StatusOr<torch::jit::Module> q = SubmoduleAt(out, (*names)[i]);
        if (!q.ok()) return q.status();
        q->setattr("alpha", acts[i].alpha.detach().clone());
        q->setattr("beta", acts[i].beta.detach().clone());
        q->setattr("levels", acts[i].levels.detach().clone());
        q->setattr("thresholds", acts[i].thresholds.detach().clone());
        q->setattr("temperature", quantized.activation_temperature());
        q->setattr("hard", true);
      }
    }
    out.eval();
    return out;
  } catch (const std::exception& e) {
    return absl::InternalError(
        absl::StrCat("building the TorchScript artifact: ", TorchErrorText(e)));
  }
}

absl::Status RecordInputNormalization(torch::jit::Module& module, const std::vector<double>& mean,
                                      const std::vector<double>& std) {
  try {
    const c10::TypePtr list = c10::ListType::ofFloats();
    module.register_attribute(kInputMeanAttr, list, c10::List<double>(mean));
    module.register_attribute(kInputStdAttr, list, c10::List<double>(std));
    return absl::OkStatus();
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot record the input normalization on the model: ", TorchErrorText(e)));
  }
}

absl::StatusOr<std::optional<InputNormalization>> RecordedInputNormalization(
    const torch::jit::Module& module) {
  if (!module.hasattr(kInputMeanAttr) && !module.hasattr(kInputStdAttr)) return std::nullopt;
  const auto read = [&](const char* name) -> std::optional<std::vector<double>> {
    if (!module.hasattr(name)) return std::nullopt;
    const c10::IValue v = module.attr(name);
    if (!v.isDoubleList()) return std::nullopt;
    return v.toDoubleVector();
  };
  std::optional<std::vector<double>> mean = read(kInputMeanAttr), std = read(kInputStdAttr);
  if (!mean || !std) {
    return absl::InvalidArgumentError(absl::StrCat("its ", kInputMeanAttr, " and ", kInputStdAttr,
                                                   " attributes must both be float lists"));
  }
  if (absl::Status s = CheckInputNormalization(*mean, *std); !s.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("its recorded input normalization is unusable: ", s.message()));
  }
  return InputNormalization{*std::move(mean), *std::move(std)};
}

absl::Status SaveFloatModel(const torch::jit::Module& model, const std::vector<double>& mean,
                            const std::vector<double>& std, const std::string& path) {
  torch::jit::Module cpu_copy = model.clone();
  cpu_copy.to(torch::kCPU);
  if (absl::Status s = RecordInputNormalization(cpu_copy, mean, std); !s.ok()) return s;
  return SaveModule(cpu_copy, path);
}

absl::Status SaveModule(const torch::jit::Module& module, const std::string& path) {
  std::ostringstream bytes;
  try {
    module.save(bytes);
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("saving ", path, ": ", TorchErrorText(e)));
  }
  return WriteFileAtomically(path, bytes.view());
}

int CodeBits(int64_t num_levels) {
  int bits = 1;
  while ((int64_t{1} << bits) < num_levels) ++bits;
  return bits;
}

std::string PackCodes(const torch::Tensor& codes, int bits) {
  const torch::Tensor c = codes.detach().to(torch::kCPU, torch::kLong).contiguous().view(-1);
  const int64_t n = c.numel();
  std::string out(static_cast<size_t>((n * bits + 7) / 8), '\0');
  const int64_t* p = c.data_ptr<int64_t>();
  int64_t bit = 0;
  for (int64_t i = 0; i < n; ++i) {
    const uint64_t v = static_cast<uint64_t>(p[i]);
    for (int b = 0; b < bits; ++b, ++bit) {
      if ((v >> b) & 1u) out[bit >> 3] = static_cast<char>(out[bit >> 3] | (1u << (bit & 7)));
    }
  }
  return out;
}

absl::StatusOr<torch::Tensor> UnpackCodes(std::string_view bytes, int64_t count, int bits) {
  if (bits < 1 || bits > 16 || count < 0) {
    return absl::InvalidArgumentError(absl::StrCat("bad code width ", bits, " or count ", count));
  }
  if (static_cast<int64_t>(bytes.size()) < (count * bits + 7) / 8) {
    return absl::InvalidArgumentError(
        absl::StrCat(count, " codes of ", bits, " bits need more than ", bytes.size(), " bytes"));
  }
  torch::Tensor out = torch::empty({count}, torch::kLong);
  int64_t* p = out.data_ptr<int64_t>();
  int64_t bit = 0;
  for (int64_t i = 0; i < count; ++i) {
    int64_t v = 0;
    for (int b = 0; b < bits; ++b, ++bit) {
      if ((static_cast<unsigned char>(bytes[bit >> 3]) >> (bit & 7)) & 1u) v |= int64_t{1} << b;
    }
    p[i] = v;
  }
  return out;
}

absl::StatusOr<PackedModel> WritePackedModel(const torch::jit::Module& hard_module,
                                             QuantizedModel& quantized, const std::string& path) {
  PackedModel packed;
  std::string payload;
  std::map<std::string, const QuantizedLayer*> by_weight;
  for (const QuantizedLayer& l : quantized.layers()) by_weight[l.name + ".weight"] = &l;
  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  for (const auto& p : hard_module.named_parameters(true)) tensors.emplace_back(p.name, p.value);
  for (const auto& b : hard_module.named_buffers(true)) tensors.emplace_back(b.name, b.value);
  for (const auto& [name, t] : tensors) {
    PackedEntry e;
    e.name = name;
    e.shape = t.sizes().vec();
    e.offset = static_cast<int64_t>(payload.size());
    std::string bytes;
    auto it = by_weight.find(name);
    if (it != by_weight.end()) {
      const QuantizedLayer& l = *it->second;
      e.quantized = true;
      e.bits = CodeBits(l.levels.numel());
      const torch::Tensor lv = l.levels.detach().to(torch::kCPU, torch::kDouble);
      e.levels.assign(lv.data_ptr<double>(), lv.data_ptr<double>() + lv.numel());
      e.alpha = l.alpha.item<double>();
      e.dtype = "float32";
      bytes = PackCodes(quantized.HardCodes(l), e.bits);
    } else {
      std::optional<std::string> dtype = DtypeName(t.scalar_type());
      if (!dtype) {
        return absl::InvalidArgumentError(
            absl::StrCat("cannot pack ", name, " of dtype ", c10::toString(t.scalar_type())));
      }
      e.dtype = *dtype;
      bytes = TensorBytes(t);
    }
    e.bytes = static_cast<int64_t>(bytes.size());
    e.sha256 = DigestOf(bytes);
    payload += bytes;
    packed.entries.push_back(std::move(e));
  }
  nlohmann::json header = {{"format", "qnet-packed-1"}, {"entries", nlohmann::json::array()}};
  for (const PackedEntry& e : packed.entries) {
    // Per-entry digests stay in the manifest: incompressible, they would dominate the header.
    nlohmann::json j = {{"name", e.name},   {"shape", e.shape},   {"quantized", e.quantized},
                        {"dtype", e.dtype}, {"offset", e.offset}, {"bytes", e.bytes}};
    if (e.quantized) {
      j["bits"] = e.bits;
      j["levels"] = e.levels;
      j["alpha"] = e.alpha;
    }
    header["entries"].push_back(j);
  }
  const std::string h = header.dump();
  absl::StatusOr<std::string> compressed = Deflate(h);
  if (!compressed.ok()) return compressed.status();
  std::string file(kMagic, kMagicSize);
  AppendUint64(file, compressed->size());
  AppendUint64(file, h.size());
  file += *compressed;
  file += payload;
  if (absl::Status s = WriteFileAtomically(path, file); !s.ok()) return s;
  packed.file_bytes = static_cast<int64_t>(file.size());
  packed.file_sha256 = DigestOf(file);
  return packed;
}

absl::StatusOr<std::map<std::string, torch::Tensor>> DecodePackedModel(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  const std::string file((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto bad = [&](const std::string& why) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": not a packed qnet model (", why, ")"));
  };
  if (file.size() < kHeaderStart || file.compare(0, kMagicSize, kMagic) != 0) {
    return bad("bad magic");
  }
  const uint64_t len = ReadUint64(std::string_view(file).substr(kMagicSize));
  const uint64_t header_size = ReadUint64(std::string_view(file).substr(kMagicSize + 8));
  if (len > file.size() - kHeaderStart) return bad("truncated header");
  const std::optional<std::string> text =
      Inflate(std::string_view(file).substr(kHeaderStart, len), header_size);
  if (!text) return bad("corrupt header");
  const nlohmann::json header = nlohmann::json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (header.is_discarded() || !header.contains("entries")) return bad("bad header");
  const std::string_view payload = std::string_view(file).substr(kHeaderStart + len);
  std::map<std::string, torch::Tensor> out;
  try {
    for (const auto& e : header.at("entries")) {
      const std::string name = e.at("name").get<std::string>();
      const std::vector<int64_t> shape = e.at("shape").get<std::vector<int64_t>>();
      const int64_t offset = e.at("offset").get<int64_t>();
      const int64_t bytes = e.at("bytes").get<int64_t>();
      if (offset < 0 || bytes < 0 || static_cast<uint64_t>(offset + bytes) > payload.size()) {
        return bad(absl::StrCat("entry ", name, " out of range"));
      }
      const std::string_view data = payload.substr(offset, bytes);
      int64_t numel = 1;
      for (int64_t d : shape) {
        if (d < 0 || (d > 0 && numel > (int64_t{1} << 40) / d)) return bad("bad shape");
        numel *= d;
      }
      if (e.at("quantized").get<bool>()) {
        const int bits = e.at("bits").get<int>();
        const std::vector<double> levels = e.at("levels").get<std::vector<double>>();
        absl::StatusOr<torch::Tensor> codes = UnpackCodes(data, numel, bits);
        if (!codes.ok()) return bad(absl::StrCat(name, ": ", codes.status().message()));
        if (numel > 0 && codes->max().item<int64_t>() >= static_cast<int64_t>(levels.size())) {
          return bad(absl::StrCat(name, ": code out of range"));
        }
        const torch::Tensor lv = torch::tensor(levels, torch::kDouble).to(torch::kFloat);
        const torch::Tensor alpha = torch::tensor(e.at("alpha").get<double>(), torch::kFloat);
        out[name] = (alpha * lv.index({*codes})).reshape(shape);
      } else {
        std::optional<torch::ScalarType> dtype = DtypeFromName(e.at("dtype").get<std::string>());
        if (!dtype) return bad(absl::StrCat(name, ": unknown dtype"));
        torch::Tensor t = torch::empty(shape, *dtype);
        if (static_cast<int64_t>(t.numel() * t.element_size()) != bytes) {
          return bad(absl::StrCat(name, ": size mismatch"));
        }
        std::memcpy(t.data_ptr(), data.data(), data.size());
        out[name] = t;
      }
    }
  } catch (const std::exception& ex) {
    return bad(TorchErrorText(ex));
  }
  return out;
}

nlohmann::json ManifestJson(const PackedModel& packed,
                            const std::map<std::string, std::string>& file_digests,
                            int64_t float_size_bytes) {
  nlohmann::json layers = nlohmann::json::array();
  nlohmann::json tensors = nlohmann::json::array();
  int64_t quantized_bytes = 0, raw_bytes = 0;
  for (const PackedEntry& e : packed.entries) {
    nlohmann::json j = {{"name", e.name},
                        {"shape", e.shape},
                        {"offset", e.offset},
                        {"bytes", e.bytes},
                        {"sha256", e.sha256}};
    if (e.quantized) {
      j["bits"] = e.bits;
      j["levels"] = e.levels;
      j["alpha"] = e.alpha;
      layers.push_back(j);
      quantized_bytes += e.bytes;
    } else {
      j["dtype"] = e.dtype;
      tensors.push_back(j);
      raw_bytes += e.bytes;
    }
  }
  nlohmann::json digests = nlohmann::json::object();
  for (const auto& [file, digest] : file_digests) digests[file] = digest;
  return {{"format", "qnet-packed-1"},
          {"file", "model.qnet"},
          {"layers", layers},
          {"tensors", tensors},
          {"totals",
           {{"float_size_bytes", float_size_bytes},
            {"packed_size_bytes", packed.file_bytes},
            {"quantized_code_bytes", quantized_bytes},
            {"raw_tensor_bytes", raw_bytes},
            {"compression_ratio", packed.file_bytes > 0 ? static_cast<double>(float_size_bytes) /
                                                              static_cast<double>(packed.file_bytes)
                                                        : 0.0}}},
          {"digests", digests}};
}

}  // namespace qnet::engine
