#include "workers/engine/export/onnx/converter.h"

#include "absl/strings/str_cat.h"

namespace qnet::engine::onnx {

absl::Status ConvertContext::Unsupported(absl::string_view why) const {
  return NotSupported(absl::StrCat(kind, why.empty() ? "" : ": ", why));
}

absl::StatusOr<std::string> ConvertContext::FirstTensor() const {
  if (in.empty() || !in[0]->tensor) return Unsupported("a non-tensor first argument");
  return in[0]->name;
}

absl::Status ConvertContext::Identity() const {
  QNET_ONNX_ASSIGN_OR_RETURN(std::string x, FirstTensor());
  e.Emit("Identity", {x}, {out_name});
  return absl::OkStatus();
}

absl::StatusOr<std::vector<int64_t>> ConvertContext::StaticInts(size_t i,
                                                                absl::string_view what) const {
  const SlotPtr& s = in[i];
  if (IsDynamic(*s)) {
    return Unsupported(absl::StrCat(what, " that depends on the batch size or the data"));
  }
  if (s->a.isInt()) return std::vector<int64_t>{s->a.toInt()};
  if (s->a.isIntList()) return s->a.toIntVector();
  return Unsupported(absl::StrCat(what, " that is not an int list"));
}

absl::StatusOr<int64_t> ConvertContext::StaticInt(size_t i, absl::string_view what) const {
  const SlotPtr& s = in[i];
  if (IsDynamic(*s) || !s->a.isInt()) {
    return Unsupported(absl::StrCat(what, " that is not a constant int"));
  }
  return s->a.toInt();
}

absl::StatusOr<double> ConvertContext::StaticDouble(size_t i, absl::string_view what) const {
  const SlotPtr& s = in[i];
  if (IsDynamic(*s)) return Unsupported(absl::StrCat(what, " that is not a constant"));
  absl::StatusOr<double> v = ToDouble(s->a, what);
  if (!v.ok()) return Unsupported(v.status().message());
  return *v;
}

absl::StatusOr<bool> ConvertContext::StaticBool(size_t i, absl::string_view what) const {
  const SlotPtr& s = in[i];
  if (IsDynamic(*s) || !s->a.isBool()) {
    return Unsupported(absl::StrCat(what, " that is not a constant bool"));
  }
  return s->a.toBool();
}

absl::StatusOr<std::vector<int64_t>> ConvertContext::Expand(std::vector<int64_t> v, size_t rank,
                                                            absl::string_view what) const {
  if (v.size() == 1 && rank > 1) v.assign(rank, v[0]);
  if (v.size() != rank) {
    return Unsupported(
        absl::StrCat(what, " with ", v.size(), " entries for ", rank, " spatial dims"));
  }
  return v;
}

const ConverterRegistry& Converters() {
  static const ConverterRegistry* registry = [] {
    ConverterRegistry& r = ConverterRegistry::Global();
    RegisterConvLinearConverters(r);
    RegisterActivationConverters(r);
    RegisterPoolingConverters(r);
    RegisterShapeConverters(r);
    RegisterMathConverters(r);
    return &r;
  }();
  return *registry;
}

}  // namespace qnet::engine::onnx
