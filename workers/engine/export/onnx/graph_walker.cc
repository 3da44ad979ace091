#include "workers/engine/export/onnx/graph_walker.h"

#include <algorithm>
#include <memory>
#include <optional>
#include <sstream>
#include <utility>

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/core/function.h>
#include <torch/csrc/jit/api/function_impl.h>
#include <torch/csrc/jit/ir/constants.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "workers/engine/export/onnx/converter.h"
#include "workers/engine/export/onnx/patterns.h"
#include "workers/engine/torch_error.h"

namespace qnet::engine::onnx {
namespace {

using c10::IValue;
using torch::jit::Block;
using torch::jit::Node;
using torch::jit::Value;

// Guards against runaway loops in user graphs.
constexpr int64_t kMaxSteps = 5'000'000;
constexpr int kMaxDepth = 256;
// Seeds the example batches, so the export is deterministic.
constexpr uint64_t kExampleSeed = 20240611;

std::string Join(const std::string& path, const std::string& name) {
  return path.empty() ? name : absl::StrCat(path, ".", name);
}

// Where a node is, for a person reading an error: its TorchScript IR, the method it is in, and
// its source (file:line:col when the module recorded one, and the text).
std::string NodeLocation(const Node* node, const std::string& scope) {
  std::ostringstream ir;
  node->print(ir, 0, nullptr, /*print_source_locations=*/false, /*print_attributes=*/true,
              /*print_scopes=*/false, /*print_body=*/false);
  std::string text = ir.str();
  text = std::string(absl::StripAsciiWhitespace(text.substr(0, text.find('\n'))));
  std::string where = absl::StrCat("node `", text, "` in ", scope);
  const torch::jit::SourceRange& range = node->sourceRange();
  if (std::optional<std::tuple<std::string, size_t, size_t>> flc = range.file_line_col()) {
    absl::StrAppend(&where, " at ", std::get<0>(*flc), ":", std::get<1>(*flc), ":",
                    std::get<2>(*flc));
  }
  if (const std::shared_ptr<torch::jit::Source> source = range.source()) {
    const std::string line = source->get_line(source->lineno_for_offset(range.start())).str();
    const absl::string_view code = absl::StripAsciiWhitespace(line);
    if (!code.empty()) absl::StrAppend(&where, ", source line `", code, "`");
  }
  return where;
}

// `s` with where `node` is appended to its message.
absl::Status AtNode(const Node* node, const std::string& scope, const absl::Status& s) {
  return absl::Status(s.code(), absl::StrCat(s.message(), " (", NodeLocation(node, scope), ")"));
}

absl::Status Unsupported(const Node* node, const std::string& scope, absl::string_view why) {
  return AtNode(node, scope, NotSupported(absl::StrCat(node->kind().toQualString(), ": ", why)));
}

// Ops whose non-tensor result depends only on shapes/types, not on tensor data.
bool IsShapeOnly(const Node* node) {
  static const auto* kinds = new std::vector<std::string>{"aten::size",
                                                          "aten::dim",
                                                          "prim::shape",
                                                          "aten::len",
                                                          "aten::numel",
                                                          "prim::dtype",
                                                          "prim::device",
                                                          "prim::layout",
                                                          "aten::__is__",
                                                          "aten::__isnot__",
                                                          "prim::is_cuda",
                                                          "prim::is_cpu",
                                                          "aten::is_floating_point",
                                                          "prim::requires_grad",
                                                          "aten::is_contiguous",
                                                          "aten::sym_size",
                                                          "aten::sym_numel",
                                                          "prim::is_quantized",
                                                          "prim::is_mkldnn"};
  const std::string k = node->kind().toQualString();
  return std::find(kinds->begin(), kinds->end(), k) != kinds->end();
}

// Indices of the tensor arguments the op writes to (relu_, add_, out= forms).
std::vector<size_t> WrittenArguments(const Node* node, const std::vector<SlotPtr>& in) {
  std::vector<size_t> written;
  if (const c10::FunctionSchema* schema = node->maybeSchema()) {
    for (size_t i = 0; i < schema->arguments().size() && i < in.size(); ++i) {
      const c10::AliasInfo* alias = schema->arguments()[i].alias_info();
      if (alias && alias->isWrite() && in[i]->a.isTensor()) written.push_back(i);
    }
  }
  return written;
}

// The TorchScript interpreter runs these prim ops itself (they have no registered operator).
// nullopt for any other op; an error message for a malformed one.
std::optional<absl::StatusOr<std::vector<IValue>>> RunInterpreterOp(Node* node,
                                                                    std::vector<IValue> in) {
  using Result = absl::StatusOr<std::vector<IValue>>;
  const c10::Symbol kind = node->kind();
  auto malformed = [](absl::string_view why) { return Result(NotSupported(why)); };
  if (kind == torch::jit::prim::ListConstruct) {
    const c10::ListTypePtr type = node->output()->type()->cast<c10::ListType>();
    if (!type) return malformed("a list without a list type");
    c10::impl::GenericList list(type->getElementType());
    list.reserve(in.size());
    for (IValue& v : in) list.push_back(std::move(v));
    return Result(std::vector<IValue>{IValue(std::move(list))});
  }
  if (kind == torch::jit::prim::TupleConstruct) {
    return Result(std::vector<IValue>{IValue(c10::ivalue::Tuple::create(std::move(in)))});
  }
  if (kind == torch::jit::prim::ListUnpack || kind == torch::jit::prim::TupleUnpack) {
    std::vector<IValue> out;
    if (in[0].isList()) {
      for (const IValue& v : in[0].toListRef()) out.push_back(v);
    } else if (in[0].isTuple()) {
      out = in[0].toTupleRef().elements().vec();
    }
    if (out.size() != node->outputs().size()) return malformed("an unpack of the wrong length");
    return Result(std::move(out));
  }
  if (kind == torch::jit::prim::TupleIndex) {
    if (!in[0].isTuple() || !in[1].isInt()) return malformed("a bad tuple index");
    const auto& elems = in[0].toTupleRef().elements();
    const int64_t i = NormDim(in[1].toInt(), static_cast<int64_t>(elems.size()));
    if (i < 0 || i >= static_cast<int64_t>(elems.size())) {
      return malformed("a tuple index out of range");
    }
    return Result(std::vector<IValue>{elems[i]});
  }
  if (kind == torch::jit::prim::Uninitialized) return Result(std::vector<IValue>{IValue()});
  if (kind == torch::jit::prim::isinstance) {
    bool match = false;
    for (const c10::TypePtr& t : node->tys(torch::jit::attr::types)) {
      match = match || in[0].type()->isSubtypeOf(*t);
    }
    return Result(std::vector<IValue>{IValue(match)});
  }
  return std::nullopt;
}

SlotPtr PairSlot(IValue a, IValue b) {
  auto s = std::make_shared<Slot>();
  s->a = std::move(a);
  s->b = std::move(b);
  return s;
}

}  // namespace

absl::StatusOr<std::vector<SlotPtr>> GraphWalker::RunGraph(torch::jit::Graph& graph,
                                                           const std::vector<SlotPtr>& args,
                                                           const std::string& scope, int depth) {
  if (depth > kMaxDepth) return NotSupported(absl::StrCat("recursion this deep (", scope, ")"));
  if (graph.inputs().size() != args.size()) {
    return absl::InternalError(
        absl::StrCat(scope, " takes ", graph.inputs().size(), " arguments, got ", args.size()));
  }
  Frame f;
  f.scope = scope;
  f.depth = depth;
  for (size_t i = 0; i < args.size(); ++i) f.env[graph.inputs()[i]] = args[i];
  QNET_ONNX_RETURN_IF_ERROR(RunBlock(graph.block(), f));
  std::vector<SlotPtr> out;
  for (const Value* v : graph.outputs()) out.push_back(f.env.at(v));
  return out;
}

absl::Status GraphWalker::RunBlock(Block* block, Frame& f) {
  for (Node* node : block->nodes()) {
    if (++steps_ > kMaxSteps) {
      return NotSupported(absl::StrCat("graphs that run more than ", kMaxSteps, " nodes"));
    }
    QNET_ONNX_RETURN_IF_ERROR(RunNode(node, f));
  }
  return absl::OkStatus();
}

absl::Status GraphWalker::RunNode(Node* node, Frame& f) {
  std::vector<SlotPtr> in;
  for (const Value* v : node->inputs()) {
    auto it = f.env.find(v);
    if (it == f.env.end()) return absl::InternalError("value used before definition");
    in.push_back(it->second);
  }
  try {
    if (std::optional<absl::Status> handled = RunControl(node, in, f)) return *handled;
    bool dynamic = false;
    for (const SlotPtr& s : in) dynamic = dynamic || IsDynamic(*s);
    return dynamic ? RunDynamic(node, in, f) : RunStatic(node, in, f);
  } catch (const c10::Error& e) {
    // The model ran on this input (Walk checks first): the op failed the way it was called here.
    return AtNode(node, f.scope,
                  absl::InvalidArgumentError(absl::StrCat(
                      "ONNX export failed while walking the model: ", TorchErrorText(e))));
  }
}

std::optional<absl::Status> GraphWalker::RunControl(Node* node, const std::vector<SlotPtr>& in,
                                                    Frame& f) {
  const c10::Symbol kind = node->kind();
  namespace prim = torch::jit::prim;
  if (kind == prim::Constant) {
    std::optional<IValue> v = torch::jit::toIValue(node->output());
    f.env[node->output()] = StaticSlot(v ? *v : IValue());
    return absl::OkStatus();
  }
  if (kind == prim::GetAttr) {
    if (!in[0]->a.isObject()) return Unsupported(node, f.scope, "attribute of a non-module value");
    const c10::intrusive_ptr<c10::ivalue::Object> obj = in[0]->a.toObject();
    const std::string name = node->s(torch::jit::attr::name);
    SlotPtr s = StaticSlot(obj->getAttr(name));
    s->path = Join(in[0]->path, name);
    if (name == "weight") {
      absl::StatusOr<std::optional<QuantInfo>> quant = LayerQuantInfo(obj, in[0]->path);
      if (!quant.ok()) return quant.status();
      s->quant = *std::move(quant);
    }
    f.env[node->output()] = s;
    return absl::OkStatus();
  }
  if (kind == prim::SetAttr) {
    return Unsupported(node, f.scope, "the forward pass changes module state");
  }
  if (kind == prim::CallMethod || kind == prim::CallFunction) return RunCall(node, in, f);
  if (kind == prim::If) return RunIf(node, in, f);
  if (kind == prim::Loop) return RunLoop(node, in, f);
  if (kind == prim::RaiseException) {
    // The model itself ran on this input (Walk checks first), so this is a path the export took
    // differently.
    std::string message = "ONNX export reached an exception in the model";
    if (!in.empty() && in[0]->a.isString()) message += ": " + in[0]->a.toStringRef();
    return AtNode(node, f.scope, absl::InvalidArgumentError(message));
  }
  if (kind == torch::jit::aten::warn || kind == prim::Print) return absl::OkStatus();
  if (kind == prim::unchecked_cast || kind == prim::unchecked_unwrap_optional ||
      kind == torch::jit::aten::_unwrap_optional) {
    f.env[node->output()] = in[0];
    return absl::OkStatus();
  }
  return std::nullopt;
}

absl::Status GraphWalker::RunIf(Node* node, const std::vector<SlotPtr>& in, Frame& f) {
  if (IsDynamic(*in[0]) || !in[0]->a.isBool()) {
    return Unsupported(node, f.scope, "a branch that depends on the batch size or the input data");
  }
  Block* block = node->blocks()[in[0]->a.toBool() ? 0 : 1];
  QNET_ONNX_RETURN_IF_ERROR(RunBlock(block, f));
  for (size_t i = 0; i < node->outputs().size(); ++i) {
    f.env[node->outputs()[i]] = f.env.at(block->outputs()[i]);
  }
  return absl::OkStatus();
}

absl::Status GraphWalker::RunLoop(Node* node, const std::vector<SlotPtr>& in, Frame& f) {
  if (IsDynamic(*in[0]) || IsDynamic(*in[1]) || !in[0]->a.isInt() || !in[1]->a.isBool()) {
    return Unsupported(node, f.scope,
                       "a loop whose trip count depends on the batch size or the data");
  }
  Block* body = node->blocks()[0];
  const int64_t trips = in[0]->a.toInt();
  bool cond = in[1]->a.toBool();
  std::vector<SlotPtr> carried(in.begin() + 2, in.end());
  for (int64_t i = 0; i < trips && cond; ++i) {
    f.env[body->inputs()[0]] = StaticSlot(IValue(i));
    for (size_t j = 0; j < carried.size(); ++j) f.env[body->inputs()[j + 1]] = carried[j];
    QNET_ONNX_RETURN_IF_ERROR(RunBlock(body, f));
    const SlotPtr& c = f.env.at(body->outputs()[0]);
    if (IsDynamic(*c) || !c->a.isBool()) {
      return Unsupported(node, f.scope,
                         "a loop condition that depends on the batch size or the data");
    }
    cond = c->a.toBool();
    for (size_t j = 0; j < carried.size(); ++j) carried[j] = f.env.at(body->outputs()[j + 1]);
  }
  for (size_t i = 0; i < node->outputs().size(); ++i) f.env[node->outputs()[i]] = carried[i];
  return absl::OkStatus();
}

absl::Status GraphWalker::RunCall(Node* node, const std::vector<SlotPtr>& in, Frame& f) {
  torch::jit::Function* fn = nullptr;
  std::vector<SlotPtr> args;
  std::string scope;
  if (node->kind() == torch::jit::prim::CallMethod) {
    if (!in[0]->a.isObject()) return Unsupported(node, f.scope, "a method of a non-module value");
    const c10::intrusive_ptr<c10::ivalue::Object> obj = in[0]->a.toObject();
    const std::string method = node->s(torch::jit::attr::name);
    if (method == "forward" && IsActivationQuantizer(obj->type())) {
      absl::StatusOr<SlotPtr> out = ActivationQuantizer(e_, in);
      if (!out.ok()) return AtNode(node, f.scope, out.status());
      f.env[node->output()] = *std::move(out);
      return absl::OkStatus();
    }
    fn = obj->type()->findMethod(method);
    args = in;
    scope = Join(in[0]->path, method);
  } else {
    const auto function_type = node->input(0)->type()->cast<c10::FunctionType>();
    if (function_type) fn = function_type->function();
    args.assign(in.begin() + 1, in.end());
    scope = fn ? fn->name() : "<function>";
  }
  torch::jit::GraphFunction* graph_fn = fn ? torch::jit::tryToGraphFunction(*fn) : nullptr;
  if (graph_fn == nullptr) return Unsupported(node, f.scope, "a call without a TorchScript graph");
  QNET_ONNX_ASSIGN_OR_RETURN(std::vector<SlotPtr> out,
                             RunGraph(*graph_fn->graph(), args, scope, f.depth + 1));
  if (out.size() != node->outputs().size()) return absl::InternalError("call arity mismatch");
  for (size_t i = 0; i < out.size(); ++i) f.env[node->outputs()[i]] = out[i];
  return absl::OkStatus();
}

absl::Status GraphWalker::RunStatic(Node* node, const std::vector<SlotPtr>& in, Frame& f) {
  if (!WrittenArguments(node, in).empty()) {
    return Unsupported(node, f.scope, "the forward pass changes a module tensor in place");
  }
  // Inputs are the same on both batches, so one run gives both (and a list op does not mutate
  // the shared list twice).
  std::vector<IValue> a, b;
  QNET_ONNX_RETURN_IF_ERROR(Evaluate(node, in, f, &a, &b, /*once=*/true));
  const bool keeps_quant =
      !in.empty() && in[0]->quant && KeepsWeightQuantization(node->kind().toQualString());
  for (size_t i = 0; i < a.size(); ++i) {
    SlotPtr s = StaticSlot(a[i]);
    if (!in.empty()) s->path = in[0]->path;
    if (keeps_quant && i == 0) s->quant = in[0]->quant;
    f.env[node->outputs()[i]] = s;
  }
  return absl::OkStatus();
}

absl::Status GraphWalker::RunDynamic(Node* node, std::vector<SlotPtr>& in, Frame& f) {
  const c10::Symbol kind = node->kind();
  namespace prim = torch::jit::prim;
  auto set_out = [&](size_t i, SlotPtr s) { f.env[node->outputs()[i]] = std::move(s); };
  // Containers holding dynamic values keep their elements' slots.
  if (kind == prim::ListConstruct || kind == prim::TupleConstruct) {
    std::vector<IValue> a, b;
    QNET_ONNX_RETURN_IF_ERROR(Evaluate(node, in, f, &a, &b));
    SlotPtr s = PairSlot(a[0], b[0]);
    s->elems = in;
    set_out(0, s);
    return absl::OkStatus();
  }
  if (kind == prim::ListUnpack || kind == prim::TupleUnpack) {
    absl::StatusOr<std::vector<SlotPtr>> elems = Elements(in[0]);
    if (!elems.ok()) return AtNode(node, f.scope, elems.status());
    if (elems->size() != node->outputs().size()) {
      return Unsupported(node, f.scope, "an unpack of the wrong length");
    }
    for (size_t i = 0; i < elems->size(); ++i) set_out(i, (*elems)[i]);
    return absl::OkStatus();
  }
  if ((kind == prim::TupleIndex || kind == torch::jit::aten::__getitem__) && in.size() == 2 &&
      !IsDynamic(*in[1]) && in[1]->a.isInt() && (in[0]->elems || !IsDynamic(*in[0]))) {
    absl::StatusOr<std::vector<SlotPtr>> elems = Elements(in[0]);
    if (!elems.ok()) return AtNode(node, f.scope, elems.status());
    const int64_t i = NormDim(in[1]->a.toInt(), static_cast<int64_t>(elems->size()));
    if (i < 0 || i >= static_cast<int64_t>(elems->size())) {
      return Unsupported(node, f.scope, "an index out of range");
    }
    set_out(0, (*elems)[i]);
    return absl::OkStatus();
  }
  if (kind == torch::jit::aten::append && in.size() == 2) {
    absl::StatusOr<std::vector<SlotPtr>> elems = Elements(in[0]);
    if (!elems.ok()) return AtNode(node, f.scope, elems.status());
    if (in[0]->a.isList() && in[0]->a.isSameIdentity(in[0]->b)) {
      in[0]->b = IValue(in[0]->a.toList().copy());  // each batch appends to its own list
    }
    std::vector<IValue> a, b;
    QNET_ONNX_RETURN_IF_ERROR(Evaluate(node, in, f, &a, &b));
    elems->push_back(in[1]);
    in[0]->elems = *std::move(elems);
    set_out(0, in[0]);
    return absl::OkStatus();
  }

  bool tensor_out = false;
  for (const Value* v : node->outputs()) tensor_out = tensor_out || HasTensor(v->type());
  bool onnx_in = false;
  for (const SlotPtr& s : in) onnx_in = onnx_in || HasOnnxTensor(*s);
  std::vector<IValue> a, b;
  QNET_ONNX_RETURN_IF_ERROR(Evaluate(node, in, f, &a, &b));
  if (!tensor_out || !onnx_in) {
    // Shape arithmetic (x.size(0), and traced graphs' size tensors): resolved now; it stays
    // "dynamic" only where the batch size shows, and ONNX ops refuse it as an operand.
    bool data = false;
    for (const SlotPtr& s : in) {
      data = data || s->data || (HasOnnxTensor(*s) && !IsShapeOnly(node));
    }
    for (size_t i = 0; i < a.size(); ++i) {
      SlotPtr s = PairSlot(a[i], b[i]);
      s->data = data;
      s->dyn = data || !SameValue(a[i], b[i]);
      set_out(i, s);
    }
    return absl::OkStatus();
  }
  std::vector<SlotPtr> out;
  for (size_t i = 0; i < a.size(); ++i) {
    out.push_back(PairSlot(a[i], b[i]));
    out.back()->tensor = a[i].isTensor();
  }
  QNET_ONNX_RETURN_IF_ERROR(Convert(node, in, out, f));
  // An in-place op's written input now names the result, so later uses of either value see it.
  const std::vector<size_t> written = WrittenArguments(node, in);
  if (!written.empty() && out.size() == 1) {
    in[written[0]]->name = out[0]->name;
    set_out(0, in[written[0]]);
    return absl::OkStatus();
  }
  for (size_t i = 0; i < out.size(); ++i) set_out(i, out[i]);
  return absl::OkStatus();
}

absl::Status GraphWalker::Convert(Node* node, const std::vector<SlotPtr>& in,
                                  const std::vector<SlotPtr>& out, Frame& f) {
  // In-place ops (relu_, add_) translate as their functional form.
  const std::string symbol = node->kind().toQualString();
  std::string kind = symbol;
  const std::vector<size_t> written = WrittenArguments(node, in);
  for (size_t i : written) {
    if (!in[i]->tensor) return Unsupported(node, f.scope, "it writes to a constant tensor");
  }
  if (!written.empty() && absl::EndsWith(kind, "_") && !absl::EndsWith(kind, "__")) {
    kind.pop_back();
  }
  ConvertContext c{
      node,
      kind,
      in,
      out,
      e_.Fresh("t"),
      !out.empty() && out[0]->a.isTensor() ? TensorA(out[0]).scalar_type() : at::kFloat,
      e_};
  if (!out.empty()) out[0]->name = c.out_name;
  const Converter* convert = Converters().Find(kind);
  if (convert == nullptr) {
    return AtNode(node, f.scope,
                  absl::InvalidArgumentError(
                      absl::StrCat("ONNX export has no converter for ", kind,
                                   kind == symbol ? "" : absl::StrCat(" (from ", symbol, ")"))));
  }
  if (absl::Status s = (*convert)(c); !s.ok()) return AtNode(node, f.scope, s);
  for (size_t i = 0; i < out.size(); ++i) {
    if (out[i]->tensor && out[i]->name.empty() && node->outputs()[i]->hasUses()) {
      return absl::InternalError(absl::StrCat("no ONNX value for ", symbol));
    }
  }
  return absl::OkStatus();
}

absl::Status GraphWalker::Evaluate(Node* node, const std::vector<SlotPtr>& in, const Frame& f,
                                   std::vector<IValue>* out_a, std::vector<IValue>* out_b,
                                   bool once) {
  const int runs = once ? 1 : 2;
  for (int run = 0; run < runs; ++run) {
    std::vector<IValue> args;
    for (const SlotPtr& s : in) args.push_back(run == 0 ? s->a : s->b);
    std::optional<absl::StatusOr<std::vector<IValue>>> special = RunInterpreterOp(node, args);
    if (!special) break;
    if (!special->ok()) {
      return AtNode(node, f.scope,
                    NotSupported(absl::StrCat(node->kind().toQualString(), ": ",
                                              special->status().message())));
    }
    *(run == 0 ? out_a : out_b) = std::move(**special);
    if (run == runs - 1) {
      if (once) *out_b = *out_a;
      return absl::OkStatus();
    }
  }
  if (node->maybeOperator() == nullptr) {
    return AtNode(node, f.scope,
                  NotSupported(absl::StrCat(node->kind().toQualString(),
                                            ": no operator runs it outside the interpreter")));
  }
  torch::jit::Operation op = node->getOperation();
  for (int run = 0; run < runs; ++run) {
    torch::jit::Stack stack;
    for (const SlotPtr& s : in) stack.push_back(run == 0 ? s->a : s->b);
    op(stack);
    if (stack.size() != node->outputs().size()) {
      return absl::InternalError(
          absl::StrCat(node->kind().toQualString(), " returned ", stack.size(), " values"));
    }
    *(run == 0 ? out_a : out_b) = std::move(stack);
  }
  if (once) *out_b = *out_a;
  return absl::OkStatus();
}

absl::Status GraphWalker::Walk(const torch::jit::Module& module, const std::vector<int64_t>& chw,
                               const IoNames& names) {
  torch::jit::Method forward = module.get_method("forward");
  std::shared_ptr<torch::jit::Graph> graph = forward.graph();
  if (graph->inputs().size() != 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("forward must take one tensor, it takes ", graph->inputs().size() - 1));
  }
  // The graph's own names are taken before any value is named: Fresh takes a free name, and the
  // emitter's defaults, "input" and "output", are taken from the start.
  e_.Fresh(names.input);
  e_.Fresh(names.output);
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(kExampleSeed);
  auto x = std::make_shared<Slot>();
  x->tensor = true;
  x->name = names.input;
  x->a = at::randn({kBatchA, chw[0], chw[1], chw[2]}, gen, at::TensorOptions().dtype(at::kFloat));
  x->b = at::randn({kBatchB, chw[0], chw[1], chw[2]}, gen, at::TensorOptions().dtype(at::kFloat));

  // The model's own run: failures here are the model's (or the shape's), not the exporter's.
  IValue reference;
  try {
    reference = forward({x->a});
  } catch (const c10::Error& e) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the model fails on input ", absl::StrJoin(chw, "x"), ": ", e.what_without_backtrace()));
  }

  QNET_ONNX_ASSIGN_OR_RETURN(std::vector<SlotPtr> outputs,
                             RunGraph(*graph, {StaticSlot(module._ivalue()), x}, "forward", 0));
  // The walk must have computed what the model computes.
  if (outputs.size() == 1 && reference.isTensor() && outputs[0]->a.isTensor()) {
    const at::Tensor want = reference.toTensor();
    const at::Tensor got = outputs[0]->a.toTensor();
    if (want.sizes() != got.sizes() ||
        (want.is_floating_point() && !at::allclose(want, got, 1e-4, 1e-5))) {
      return absl::InternalError(
          "ONNX export: the graph walk does not reproduce the model's output");
    }
  }
  std::vector<SlotPtr> flat;
  for (const SlotPtr& s : outputs) {
    if (s->elems) {
      flat.insert(flat.end(), s->elems->begin(), s->elems->end());
    } else {
      flat.push_back(s);
    }
  }
  if (flat.empty()) return absl::InvalidArgumentError("forward returns nothing");

  e_.AddInput(names.input, chw);
  for (const SlotPtr& s : flat) {
    if (!s->a.isTensor() || !s->b.isTensor()) {
      return absl::InvalidArgumentError("forward must return a tensor (or a tuple of tensors)");
    }
    const std::string name = flat.size() == 1 ? names.output : e_.Fresh(names.output);
    if (s->tensor) {
      e_.Emit("Identity", {s->name}, {name});
    } else {
      QNET_ONNX_ASSIGN_OR_RETURN(std::string c, e_.Operand(s, std::nullopt));
      e_.Emit("Identity", {c}, {name});
    }
    QNET_ONNX_RETURN_IF_ERROR(e_.AddOutput(name, TensorA(s), s->b.toTensor()));
  }
  return absl::OkStatus();
}

}  // namespace qnet::engine::onnx
