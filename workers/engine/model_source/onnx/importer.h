// The ONNX importer: an ONNX classifier (onnx_file.h) as a trainable TorchScript module, built
// like a zoo model (docs/ARCHITECTURE.md, "ONNX models"). Each ONNX node becomes TorchScript source
// lines of ATen calls in the root's `forward`; each Conv, Gemm and MatMul with a constant weight
// becomes a submodule whose `weight` parameter the op reads (torch.conv2d / torch.linear), so the
// QN transform finds it as a layer; each BatchNormalization a submodule with running statistics
// that torch.batch_norm reads, as the transform and batch-norm re-estimation expect (and a Conv
// whose batch norm the exporter folded into it gets one restored behind it, see
// ConvsWithFoldedBatchNorm); other
// initializers a tensor op reads become parameters (float) or buffers of the root. Values that
// do not depend on the input (initializers, Constant and the shape arithmetic exporters emit
// around Reshape) are folded at import; the shape of a runtime tensor stays a TorchScript int
// list (x.size()), so the batch dimension is free.
//
//   absl::StatusOr<OnnxFile> file = ReadOnnxFile(path);
//   absl::StatusOr<ImportedModel> m = ImportOnnx(*file);   // m->module, m->input_shape
#ifndef QNET_WORKERS_ENGINE_MODEL_SOURCE_ONNX_IMPORTER_H_
#define QNET_WORKERS_ENGINE_MODEL_SOURCE_ONNX_IMPORTER_H_

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <torch/script.h>

#include "absl/status/statusor.h"
#include "workers/engine/model_source/onnx/onnx_file.h"

namespace qnet::engine::onnx_import {

struct ImportedModel {
  torch::jit::Module module;  // forward(x: [N, C, H, W] float) -> the graph's output
  // {C, H, W} when the graph's input declares them (its NHWC layout turned into NCHW).
  std::optional<std::vector<int64_t>> input_shape;
  // The batch norms restored behind convolutions (submodule names of `module`). They start as the
  // identity in eval mode (running statistics 0 and 1, weight sqrt(1 + eps)); the job sets them
  // from its data before training (InitIdentityBatchNorms, training/evaluation.h) so that they
  // are the identity in train mode too.
  std::vector<std::string> restored_batch_norms;
};

// The Conv nodes of `file` whose batch norm torch.onnx.export's constant folding merged into them,
// as far as the graph shows (folded_batch_norms.cc says how it is read): in a graph without any
// normalisation node, every Conv except squeeze-and-excitation gates and classifier convs.
std::set<const qnet_onnx::NodeProto*> ConvsWithFoldedBatchNorm(const OnnxFile& file);

// The unsupported ops of `file`, as "Op (node 'name')" texts; empty when every op is supported.
std::vector<std::string> UnsupportedOps(const OnnxFile& file);

absl::StatusOr<ImportedModel> ImportOnnx(const OnnxFile& file);

// What an op handler sees of a value: a constant known at import, a runtime tensor, or the shape
// arithmetic of runtime tensors (a TorchScript int or List[int]).
struct Operand {
  enum class Kind { kConst, kTensor, kInt, kInts };
  Kind kind = Kind::kTensor;
  torch::Tensor value;  // kConst
  std::string expr;     // otherwise: a TorchScript variable or expression
  int64_t rank = -1;    // kTensor: the number of dimensions; kInts: the list's length
  std::string name;     // the ONNX value's name
  bool initializer = false;

  bool is_const() const { return kind == Kind::kConst; }
  // The number of dimensions of the tensor this value is (a shape list is 1-D); -1 if unknown.
  int64_t tensor_rank() const {
    switch (kind) {
      case Kind::kConst:
        return value.dim();
      case Kind::kInt:
        return 0;
      case Kind::kInts:
        return 1;
      default:
        return rank;
    }
  }

  Operand() = default;
  static Operand Const(torch::Tensor value) {
    return Operand(Kind::kConst, std::move(value), "", -1);
  }
  static Operand Tensor(std::string expr, int64_t rank) {
    return Operand(Kind::kTensor, torch::Tensor(), std::move(expr), rank);
  }
  static Operand Int(std::string expr) {
    return Operand(Kind::kInt, torch::Tensor(), std::move(expr), -1);
  }
  // `length`: the list's, -1 when unknown.
  static Operand Ints(std::string expr, int64_t length) {
    return Operand(Kind::kInts, torch::Tensor(), std::move(expr), length);
  }

 private:
  Operand(Kind k, torch::Tensor v, std::string e, int64_t r)
      : kind(k), value(std::move(v)), expr(std::move(e)), rank(r) {}
};

// One node being imported; handlers read its inputs and attributes and set its outputs.
class NodeContext {
 public:
  virtual ~NodeContext() = default;
  virtual const qnet_onnx::NodeProto& node() const = 0;
  int64_t opset() const { return opset_; }

  // Input i; absent (optional and not given) when has_input(i) is false.
  virtual bool has_input(int i) const = 0;
  virtual const Operand& input(int i) const = 0;
  // Input i as a tensor expression (a constant becomes a parameter or buffer of the root).
  virtual std::string TensorExpr(int i) = 0;
  // Input i, which must be a constant (a weight, axes, pads, ...); `what` names it in errors.
  virtual absl::StatusOr<torch::Tensor> ConstInput(int i, const std::string& what) const = 0;
  absl::StatusOr<std::vector<int64_t>> ConstInts(int i, const std::string& what) const;

  // Attributes, with their default when absent.
  int64_t Int(const std::string& name, int64_t fallback) const;
  double Float(const std::string& name, double fallback) const;
  std::string String(const std::string& name, const std::string& fallback) const;
  std::optional<std::vector<int64_t>> Ints(const std::string& name) const;
  const qnet_onnx::AttributeProto* Attr(const std::string& name) const;

  // `expr` assigned to a fresh variable, whose name it returns (an intermediate of the node).
  virtual std::string Let(const std::string& expr) = 0;
  // Output i: a runtime tensor `expr` (assigned to a fresh variable) of `rank` dimensions.
  virtual void SetTensor(int i, const std::string& expr, int64_t rank) = 0;
  // Several outputs from one expression returning a list (a, b = torch.split(...)).
  virtual void SetTensors(const std::string& list_expr, int64_t rank) = 0;
  virtual void SetOutput(int i, Operand value) = 0;
  // A submodule of the root holding `params` (parameters) and `buffers`, named after the node;
  // returns its TorchScript path, "self.<name>".
  virtual std::string AddLayer(const std::string& kind,
                               const std::map<std::string, torch::Tensor>& params,
                               const std::map<std::string, torch::Tensor>& buffers,
                               const std::map<std::string, double>& floats) = 0;

  // INVALID_ARGUMENT naming the node.
  absl::Status Error(const std::string& message) const;

 protected:
  int64_t opset_ = 0;
};

struct OpHandler {
  absl::Status (*convert)(NodeContext&);
  int min_inputs = 1;  // the inputs the op requires; the importer checks them before `convert`
};

// The handlers, by op type; each ops_*.cc adds its own.
void AddTensorOps(std::map<std::string, OpHandler>& ops);
void AddLayerOps(std::map<std::string, OpHandler>& ops);
void AddShapeOps(std::map<std::string, OpHandler>& ops);

// torch.batch_norm of `x` with the running statistics and affine of the batch-norm submodule at
// `layer` ("self.<name>").
std::string BatchNormCall(const std::string& x, const std::string& layer);

// TorchScript literals.
std::string FloatLiteral(double v);
std::string IntList(const std::vector<int64_t>& v);
// The TorchScript dtype (torch.float32, ...) of an ONNX element type; "" when unsupported.
std::string DTypeName(int64_t onnx_type);

// An axis in [0, rank), from ONNX's [-rank, rank); nullopt when out of range or rank unknown.
std::optional<int64_t> NormalizeAxis(int64_t axis, int64_t rank);

}  // namespace qnet::engine::onnx_import

#endif  // QNET_WORKERS_ENGINE_MODEL_SOURCE_ONNX_IMPORTER_H_
