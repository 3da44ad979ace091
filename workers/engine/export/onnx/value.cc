#include "workers/engine/export/onnx/value.h"

#include "absl/strings/str_cat.h"

namespace qnet::engine::onnx {

using c10::IValue;

bool IsDynamic(const Slot& s) {
  if (s.tensor || s.dyn) return true;
  if (s.elems) {
    for (const SlotPtr& e : *s.elems) {
      if (IsDynamic(*e)) return true;
    }
  }
  return false;
}

bool HasOnnxTensor(const Slot& s) {
  if (s.tensor) return true;
  if (s.elems) {
    for (const SlotPtr& e : *s.elems) {
      if (HasOnnxTensor(*e)) return true;
    }
  }
  return false;
}

SlotPtr StaticSlot(IValue v) {
  auto s = std::make_shared<Slot>();
  s->a = v;
  s->b = std::move(v);
  return s;
}

absl::StatusOr<std::vector<SlotPtr>> Elements(const SlotPtr& s) {
  if (s->elems) return *s->elems;
  std::vector<SlotPtr> out;
  auto element = [&](IValue a, IValue b) {
    auto e = std::make_shared<Slot>();
    e->a = std::move(a);
    e->b = std::move(b);
    e->dyn = !SameValue(e->a, e->b);
    out.push_back(std::move(e));
  };
  if (s->a.isList() && s->b.isList()) {
    const c10::List<IValue> la = s->a.toList();
    const c10::List<IValue> lb = s->b.toList();
    if (la.size() != lb.size()) return NotSupported("lists whose length depends on the batch");
    for (size_t i = 0; i < la.size(); ++i) element(la.get(i), lb.get(i));
    return out;
  }
  if (s->a.isTuple() && s->b.isTuple()) {
    const auto& ea = s->a.toTupleRef().elements();
    const auto& eb = s->b.toTupleRef().elements();
    for (size_t i = 0; i < ea.size() && i < eb.size(); ++i) element(ea[i], eb[i]);
    return out;
  }
  return absl::InternalError("not a list or tuple");
}

bool SameValue(const IValue& x, const IValue& y) {
  if (x.isTensor() && y.isTensor()) {
    const at::Tensor& tx = x.toTensor();
    const at::Tensor& ty = y.toTensor();
    if (tx.unsafeGetTensorImpl() == ty.unsafeGetTensorImpl()) return true;
    if (!tx.defined() || !ty.defined()) return tx.defined() == ty.defined();
    return tx.sizes() == ty.sizes() && tx.scalar_type() == ty.scalar_type() && tx.equal(ty);
  }
  if (x.isList() && y.isList()) {
    const c10::List<IValue> lx = x.toList();
    const c10::List<IValue> ly = y.toList();
    if (lx.size() != ly.size()) return false;
    for (size_t i = 0; i < lx.size(); ++i) {
      if (!SameValue(lx.get(i), ly.get(i))) return false;
    }
    return true;
  }
  if (x.isTuple() && y.isTuple()) {
    const auto& ex = x.toTupleRef().elements();
    const auto& ey = y.toTupleRef().elements();
    if (ex.size() != ey.size()) return false;
    for (size_t i = 0; i < ex.size(); ++i) {
      if (!SameValue(ex[i], ey[i])) return false;
    }
    return true;
  }
  if (x.isInt() && y.isInt()) return x.toInt() == y.toInt();
  if (x.isDouble() && y.isDouble()) return x.toDouble() == y.toDouble();
  if (x.isBool() && y.isBool()) return x.toBool() == y.toBool();
  if (x.isString() && y.isString()) return x.toStringRef() == y.toStringRef();
  if (x.isNone() && y.isNone()) return true;
  if (x.isDevice() && y.isDevice()) return x.toDevice() == y.toDevice();
  return x.isSameIdentity(y);
}

bool HasTensor(const c10::TypePtr& type) {
  if (type->kind() == c10::TypeKind::TensorType) return true;
  for (const c10::TypePtr& t : type->containedTypes()) {
    if (HasTensor(t)) return true;
  }
  return false;
}

absl::StatusOr<double> ToDouble(const IValue& v, absl::string_view what) {
  if (v.isDouble()) return v.toDouble();
  if (v.isInt()) return static_cast<double>(v.toInt());
  if (v.isTensor() && v.toTensor().defined() && v.toTensor().numel() == 1) {
    return v.toTensor().item<double>();
  }
  return absl::InvalidArgumentError(absl::StrCat(what, " is not a number"));
}

absl::StatusOr<std::vector<double>> ToDoubles(const IValue& v, absl::string_view what) {
  std::vector<double> out;
  if (v.isTensor() && v.toTensor().defined()) {
    const at::Tensor t = v.toTensor().detach().to(at::kCPU, at::kDouble).contiguous().view(-1);
    out.assign(t.data_ptr<double>(), t.data_ptr<double>() + t.numel());
    return out;
  }
  if (v.isDoubleList()) {
    for (double d : v.toDoubleVector()) out.push_back(d);
    return out;
  }
  if (v.isIntList()) {
    for (int64_t i : v.toIntVector()) out.push_back(static_cast<double>(i));
    return out;
  }
  return absl::InvalidArgumentError(absl::StrCat(what, " is not a tensor or list of numbers"));
}

absl::Status NotSupported(absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("ONNX export does not support ", what));
}

}  // namespace qnet::engine::onnx
