#include "workers/engine/transform/transform.h"

#include <algorithm>
#include <functional>
#include <map>
#include <set>
#include <utility>

#include <torch/csrc/jit/frontend/resolver.h>
#include <torch/csrc/jit/frontend/sugared_value.h>
#include <torch/csrc/jit/ir/ir.h>
#include <torch/library.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "workers/engine/quantization/levels.h"
#include "workers/engine/quantization/quantizer.h"
#include "workers/engine/transform/model_graph.h"

namespace qnet::engine {
namespace {

using torch::jit::Module;

// The fused quantizer as a TorchScript operator, so a scripted module can call it. A
// CompositeImplicitAutograd kernel: the autograd function inside records its own backward.
torch::Tensor QnQuantizeOp(const torch::Tensor& x, const torch::Tensor& alpha,
                           const torch::Tensor& beta, const torch::Tensor& levels,
                           const torch::Tensor& thresholds, double temperature, bool hard) {
  return Quantize(x, alpha, beta, levels, thresholds, temperature, hard);
}

TORCH_LIBRARY_FRAGMENT(qnet, m) {
  m.def(
      "qn_quantize(Tensor x, Tensor alpha, Tensor beta, Tensor levels, Tensor thresholds, "
      "float temperature, bool hard) -> Tensor",
      &QnQuantizeOp);
}

// define() resolves only `torch`; `qnet.` names the operator namespace above.
struct QnetResolver : torch::jit::Resolver {
  std::shared_ptr<torch::jit::SugaredValue> resolveValue(
      const std::string& name, torch::jit::GraphFunction& /*m*/,
      const torch::jit::SourceRange& /*loc*/) override {
    if (name == "torch") return std::make_shared<torch::jit::BuiltinModule>("aten");
    if (name == "qnet") return std::make_shared<torch::jit::BuiltinModule>("qnet");
    return nullptr;
  }
  c10::TypePtr resolveType(const std::string& /*name*/,
                           const torch::jit::SourceRange& /*loc*/) override {
    return nullptr;
  }
};

constexpr char kTrainingForward[] = R"(
def forward(self, x: Tensor) -> Tensor:
    if self.calibrating:
        self.observed.append(x.detach())
    if self.enabled:
        return qnet.qn_quantize(x, self.alpha, self.beta, self.levels, self.thresholds,
                                self.temperature, self.hard)
    return x
)";

// Plain ATen, so stock PyTorch loads it. Hard: j = #{i : b_i <= beta*x}, y = alpha*q_j (the
// fused op's definition); soft: the sum of clamped sigmoids.
constexpr char kExportForward[] = R"(
def forward(self, x: Tensor) -> Tensor:
    bx = self.beta * x
    y = torch.zeros_like(x) + self.levels[0]
    for i in range(self.thresholds.size(0)):
        step = self.levels[i + 1] - self.levels[i]
        if self.hard:
            y = y + step * torch.ge(bx, self.thresholds[i]).type_as(x)
        else:
            z = torch.clamp(self.temperature * (bx - self.thresholds[i]), -10.0, 10.0)
            y = y + step * torch.sigmoid(z)
    return self.alpha * y
)";

torch::Tensor Scalar(double v, const torch::Device& device, bool requires_grad) {
  return torch::tensor(v, torch::TensorOptions().dtype(torch::kFloat).device(device))
      .requires_grad_(requires_grad);
}

// "qnet_act_" and the layer's path with dots as underscores; a name the root already has gets
// underscores appended.
std::string QuantizerName(const Module& root, const std::string& layer) {
  std::string name = "qnet_act_" + layer;
  std::replace(name.begin(), name.end(), '.', '_');
  while (root.hasattr(name)) name += "_";
  return name;
}

// Makes every batch norm with running statistics follow its module's training flag and take its
// momentum from the root's kBatchNormMomentumAttr while that is >= 0 (see transform.h).
void RouteBatchNorms(Module& model, torch::jit::Graph& graph) {
  const std::vector<BatchNormUse> uses = BatchNormUses(graph);
  if (uses.empty()) return;
  model.register_attribute(kBatchNormMomentumAttr, c10::FloatType::get(), -1.0);
  torch::jit::Value* self = graph.inputs()[0];
  for (const BatchNormUse& use : uses) {
    torch::jit::WithInsertPoint guard(use.node);
    torch::jit::Value* bn = InsertModulePath(graph, use.path);
    use.node->replaceInput(kBatchNormTrainingInput, graph.insertGetAttr(bn, "training"));
    torch::jit::Value* forced = graph.insertGetAttr(self, kBatchNormMomentumAttr);
    torch::jit::Value* on = graph.insert(torch::jit::aten::ge, {forced, 0.0});
    torch::jit::Node* choice = graph.create(torch::jit::prim::If, {on}, 1);
    choice->output()->setType(c10::FloatType::get());
    choice->addBlock()->registerOutput(forced);
    choice->addBlock()->registerOutput(use.node->input(kBatchNormMomentumInput));
    graph.insertNode(choice);
    use.node->replaceInput(kBatchNormMomentumInput, choice->output());
  }
}

}  // namespace

std::vector<LayerRef> FindQuantizableLayers(const Module& model, bool quantize_first_last) {
  std::vector<LayerRef> layers;
  std::set<const c10::ivalue::Object*> seen;
  std::shared_ptr<torch::jit::Graph> graph = InlinedForwardCopy(model);
  for (const WeightUse& use : WeightUses(*graph)) {
    absl::StatusOr<Module> m = SubmoduleAt(model, use.path);
    if (!m.ok() || !seen.insert(m->_ivalue().get()).second) continue;
    const c10::IValue weight = m->attr("weight");
    if (!weight.isTensor()) continue;
    const torch::Tensor w = weight.toTensor();
    if (!w.defined() || !w.is_floating_point() || w.dim() != (use.is_conv ? 4 : 2)) continue;
    layers.push_back({.name = use.path,
                      .module = *m,
                      .is_conv = use.is_conv,
                      .in_channels = use.is_conv ? w.size(1) * use.groups : w.size(1),
                      .quantize = true});
  }
  if (!quantize_first_last && !layers.empty()) {
    layers.front().quantize = false;
    layers.back().quantize = false;
  }
  return layers;
}

absl::Status CheckSomethingToQuantize(const std::vector<LayerRef>& layers) {
  if (layers.empty()) {
    return absl::InvalidArgumentError(
        "the model has no Conv2d or Linear layer that its forward pass uses: nothing to quantize");
  }
  for (const LayerRef& l : layers) {
    if (l.quantize) return absl::OkStatus();
  }
  return absl::InvalidArgumentError(
      absl::StrCat("the model's only Conv2d/Linear layers are its first and last (",
                   layers.front().name, layers.size() > 1 ? ", " + layers.back().name : "",
                   "), which stay float: nothing to quantize; set quantize_first_last"));
}

std::vector<Module> FindBatchNorms(const Module& model) {
  std::vector<Module> out;
  std::set<const c10::ivalue::Object*> seen;
  std::shared_ptr<torch::jit::Graph> graph = InlinedForwardCopy(model);
  for (const BatchNormUse& use : BatchNormUses(*graph)) {
    absl::StatusOr<Module> m = SubmoduleAt(model, use.path);
    if (m.ok() && seen.insert(m->_ivalue().get()).second) out.push_back(*m);
  }
  return out;
}

absl::StatusOr<Module> SubmoduleAt(const Module& root, const std::string& path) {
  Module current = root;
  if (path.empty()) return current;
  size_t start = 0;
  while (start <= path.size()) {
    size_t dot = path.find('.', start);
    if (dot == std::string::npos) dot = path.size();
    const std::string part = path.substr(start, dot - start);
    if (!current.hasattr(part) || !current.attr(part).isModule()) {
      return absl::NotFoundError(absl::StrCat("no submodule '", path, "'"));
    }
    current = current.attr(part).toModule();
    start = dot + 1;
  }
  return current;
}

Module MakeActivationQuantizerModule(QuantizerFlavour flavour, const torch::Tensor& levels,
                                     const torch::Tensor& thresholds, double alpha, double beta) {
  const bool training = flavour == QuantizerFlavour::kTraining;
  Module m(c10::QualifiedName(training ? "__torch__.qnet.QnetActivationQuantizerTraining"
                                       : "__torch__.qnet.QnetActivationQuantizer"));
  const torch::Device device = levels.device();
  m.register_attribute("training", c10::BoolType::get(), false);
  m.register_parameter("alpha", Scalar(alpha, device, training), false);
  m.register_parameter("beta", Scalar(beta, device, training), false);
  m.register_buffer("levels", levels.detach().to(torch::kFloat).clone());
  m.register_buffer("thresholds", thresholds.detach().to(torch::kFloat).clone());
  m.register_attribute("temperature", c10::FloatType::get(), 1.0);
  m.register_attribute("hard", c10::BoolType::get(), !training);
  if (training) {
    m.register_attribute("enabled", c10::BoolType::get(), true);
    m.register_attribute("calibrating", c10::BoolType::get(), false);
    m.register_attribute("observed", c10::ListType::ofTensors(), c10::List<at::Tensor>());
    m.define(kTrainingForward, std::make_shared<QnetResolver>());
  } else {
    m.define(kExportForward);
  }
  return m;
}

absl::StatusOr<std::vector<std::string>> InsertActivationQuantizers(
    Module& model, const std::vector<std::string>& layers,
    const std::function<Module(const std::string& layer)>& make_quantizer) {
  std::map<const c10::ivalue::Object*, size_t> index;
  for (size_t i = 0; i < layers.size(); ++i) {
    absl::StatusOr<Module> layer = SubmoduleAt(model, layers[i]);
    if (!layer.ok()) return layer.status();
    index.emplace(layer->_ivalue().get(), i);
  }
  std::shared_ptr<torch::jit::Graph> graph = InlineForward(model);
  torch::jit::Value* self = graph->inputs()[0];
  std::vector<std::string> names(layers.size());
  for (const WeightUse& use : WeightUses(*graph)) {
    absl::StatusOr<Module> layer = SubmoduleAt(model, use.path);
    if (!layer.ok()) continue;
    auto it = index.find(layer->_ivalue().get());
    if (it == index.end()) continue;
    std::string& name = names[it->second];
    if (name.empty()) {
      name = QuantizerName(model, layers[it->second]);
      model.register_module(name, make_quantizer(layers[it->second]));
    }
    torch::jit::WithInsertPoint guard(use.node);
    torch::jit::Value* q = graph->insertGetAttr(self, name);
    torch::jit::Node* call = graph->create(torch::jit::prim::CallMethod, {q, use.node->input(0)});
    call->s_(torch::jit::attr::name, "forward");
    call->output()->setType(c10::TensorType::get());
    graph->insertNode(call);
    use.node->replaceInput(0, call->output());
  }
  return names;
}

absl::StatusOr<std::unique_ptr<QuantizedModel>> QuantizedModel::Create(Module model,
                                                                       const QuantSpec& spec) {
  if (!spec.weight_levels.defined()) return absl::InvalidArgumentError("no weight levels");
  std::unique_ptr<QuantizedModel> q(new QuantizedModel(std::move(model), spec));
  Module& m = q->model_;
  // Module::clone() copies tensors with clone(), leaving non-leaf parameters that would never
  // receive a .grad: make every parameter a leaf again.
  for (const auto& p : m.named_parameters(/*recurse=*/true)) {
    if (p.value.is_leaf()) continue;
    const size_t dot = p.name.rfind('.');
    absl::StatusOr<Module> owner =
        SubmoduleAt(m, dot == std::string::npos ? "" : p.name.substr(0, dot));
    if (!owner.ok()) return owner.status();
    owner->setattr(dot == std::string::npos ? p.name : p.name.substr(dot + 1),
                   p.value.detach().requires_grad_(p.value.is_floating_point()));
  }
  RouteBatchNorms(m, *InlineForward(m));
  std::vector<LayerRef> found = FindQuantizableLayers(m, spec.quantize_first_last);
  if (absl::Status s = CheckSomethingToQuantize(found); !s.ok()) return s;
  torch::Device device = found.front().module.attr("weight").toTensor().device();
  for (const LayerRef& ref : found) {
    if (!ref.quantize) continue;
    const torch::Tensor w = ref.module.attr("weight").toTensor().detach();
    absl::StatusOr<QuantizerParams> p =
        InitWeightQuantizer(w.to(torch::kCPU, torch::kFloat), spec.weight_levels.cpu());
    if (!p.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("layer ", ref.name, ": ", p.status().message()));
    }
    QuantizedLayer layer;
    layer.name = ref.name;
    layer.module = ref.module;
    layer.latent = w.clone().requires_grad_(true);
    layer.alpha = Scalar(p->alpha, device, true);
    layer.beta = Scalar(p->beta, device, true);
    layer.levels = p->levels.to(device);
    layer.alpha_lr_factor = StepSizeLrFactor(p->levels);
    layer.thresholds = p->thresholds.to(device).requires_grad_(spec.learn_thresholds);
    {
      // alpha = 1/beta puts the outer levels at 0.8 max|w|, far above a typical weight; models
      // without batch norm then see activations blow up. The least-squares scale for the
      // initial codes, alpha = <w, q> / <q, q>, keeps the layer's output scale.
      torch::NoGradGuard no_grad;
      const torch::Tensor qv = layer.levels.index({q->HardCodes(layer)});
      const double qq = qv.pow(2).sum().item<double>();
      if (qq > 0) layer.alpha.fill_((w * qv).sum().item<double>() / qq);
    }
    q->layers_.push_back(std::move(layer));
  }
  if (spec.activation_levels.defined()) {
    // The first layer's input is the image, not a ReLU output: it stays float.
    std::vector<std::string> targets;
    for (const QuantizedLayer& l : q->layers_) {
      if (l.name != found.front().name) targets.push_back(l.name);
    }
    const torch::Tensor levels = spec.activation_levels.to(device, torch::kFloat);
    const int64_t n = levels.numel() - 1;
    const torch::Tensor thresholds =
        torch::arange(n, torch::TensorOptions().dtype(torch::kFloat).device(device)) + 0.5;
    const Module prototype =
        MakeActivationQuantizerModule(QuantizerFlavour::kTraining, levels, thresholds, 1.0, 1.0);
    absl::StatusOr<std::vector<std::string>> names = InsertActivationQuantizers(
        m, targets, [&](const std::string&) { return prototype.deepcopy(); });
    if (!names.ok()) return names.status();
    for (size_t i = 0; i < targets.size(); ++i) {
      if ((*names)[i].empty()) continue;
      absl::StatusOr<Module> qm = SubmoduleAt(m, (*names)[i]);
      if (!qm.ok()) return qm.status();
      ActivationQuantizer a;
      a.name = (*names)[i];
      a.layer = targets[i];
      a.module = *qm;
      // deepcopy clones tensors, which makes them non-leaves: install fresh leaves.
      for (const char* name : {"alpha", "beta"}) {
        qm->setattr(name, qm->attr(name).toTensor().detach().clone().requires_grad_(true));
      }
      a.alpha = qm->attr("alpha").toTensor();
      a.beta = qm->attr("beta").toTensor();
      a.levels = qm->attr("levels").toTensor();
      a.thresholds = qm->attr("thresholds").toTensor();
      a.alpha_lr_factor = StepSizeLrFactor(spec.activation_levels);
      q->act_.push_back(std::move(a));
    }
  }
  for (const torch::Tensor& p : q->OtherParameters()) {
    if (p.is_floating_point() && p.is_leaf()) p.requires_grad_(true);
  }
  q->RefreshWeights();
  return q;
}

std::vector<torch::Tensor> QuantizedModel::OtherParameters() const {
  std::set<std::string> skip;
  for (const QuantizedLayer& l : layers_) skip.insert(l.name + ".weight");
  std::vector<torch::Tensor> out;
  for (const auto& p : model_.named_parameters(/*recurse=*/true)) {
    if (skip.count(p.name) != 0) continue;
    bool in_quantizer = false;
    for (const ActivationQuantizer& a : act_) {
      if (absl::StartsWith(p.name, a.name + ".")) in_quantizer = true;
    }
    if (!in_quantizer) out.push_back(p.value);
  }
  return out;
}

std::vector<torch::Tensor> QuantizedModel::LatentWeights() const {
  std::vector<torch::Tensor> out;
  for (const QuantizedLayer& l : layers_) out.push_back(l.latent);
  return out;
}

std::vector<torch::Tensor> QuantizedModel::WeightQuantizerParameters() const {
  std::vector<torch::Tensor> out;
  for (const QuantizedLayer& l : layers_) {
    out.push_back(l.alpha);
    out.push_back(l.beta);
    if (spec_.learn_thresholds) out.push_back(l.thresholds);
  }
  return out;
}

std::vector<torch::Tensor> QuantizedModel::ActivationQuantizerParameters() const {
  std::vector<torch::Tensor> out;
  for (const ActivationQuantizer& a : act_) {
    out.push_back(a.alpha);
    out.push_back(a.beta);
  }
  return out;
}

void QuantizedModel::SetTemperature(double weight_t, double activation_t) {
  weight_temperature_ = weight_t;
  activation_temperature_ = activation_t;
  for (ActivationQuantizer& a : act_) a.module.setattr("temperature", activation_t);
}

void QuantizedModel::SetHard(bool weights_hard, bool activations_hard) {
  weights_hard_ = weights_hard;
  for (ActivationQuantizer& a : act_) a.module.setattr("hard", activations_hard);
}

void QuantizedModel::SetActivationsEnabled(bool enabled) {
  for (ActivationQuantizer& a : act_) a.module.setattr("enabled", enabled);
}

void QuantizedModel::SetCalibrating(bool on) {
  for (ActivationQuantizer& a : act_) {
    a.module.setattr("calibrating", on);
    a.module.setattr("observed", c10::List<at::Tensor>());
  }
}

std::vector<torch::Tensor> QuantizedModel::TakeObservedActivations() {
  std::vector<torch::Tensor> out;
  for (ActivationQuantizer& a : act_) {
    std::vector<torch::Tensor> calls;
    for (const torch::Tensor& t : a.module.attr("observed").toTensorVector()) {
      calls.push_back(t.flatten());
    }
    out.push_back(calls.empty() ? torch::zeros({0}) : torch::cat(calls));
    a.module.setattr("observed", c10::List<at::Tensor>());
  }
  return out;
}

void QuantizedModel::SetActivationQuantizer(size_t index, double alpha, double beta,
                                            const torch::Tensor& thresholds) {
  torch::NoGradGuard no_grad;
  ActivationQuantizer& a = act_.at(index);
  a.alpha.fill_(alpha);
  a.beta.fill_(beta);
  a.thresholds.copy_(thresholds.to(a.thresholds.device(), torch::kFloat));
}

void QuantizedModel::SetActivationLevels(size_t index, const torch::Tensor& levels,
                                         const torch::Tensor& thresholds) {
  ActivationQuantizer& a = act_.at(index);
  const torch::Device device = a.alpha.device();
  a.levels = levels.detach().to(device, torch::kFloat).clone();
  a.alpha_lr_factor = StepSizeLrFactor(levels);
  a.thresholds = thresholds.detach().to(device, torch::kFloat).clone();
  a.module.setattr("levels", a.levels);
  a.module.setattr("thresholds", a.thresholds);
}

torch::Tensor QuantizedModel::HardCodes(const QuantizedLayer& layer) const {
  torch::NoGradGuard no_grad;
  const torch::Tensor bx = layer.beta.detach() * layer.latent.detach();
  // Number of thresholds <= beta*x; independent of the thresholds' order.
  const torch::Tensor sorted = std::get<0>(torch::sort(layer.thresholds.detach()));
  return torch::bucketize(bx, sorted, /*out_int32=*/false, /*right=*/true);
}

void QuantizedModel::RefreshWeights() {
  for (QuantizedLayer& l : layers_) {
    torch::Tensor w;
    if (weights_hard_) {
      torch::NoGradGuard no_grad;
      w = l.alpha.detach() * l.levels.index({HardCodes(l)});
    } else {
      w = Quantize(l.latent, l.alpha, l.beta, l.levels, l.thresholds, weight_temperature_, false);
    }
    l.module.setattr("weight", w);
  }
}

void QuantizedModel::ScaleStepSizeGradients() {
  torch::NoGradGuard no_grad;
  const auto scale = [](const torch::Tensor& alpha, double factor) {
    if (factor != 1 && alpha.grad().defined()) alpha.mutable_grad().mul_(factor);
  };
  for (const QuantizedLayer& l : layers_) scale(l.alpha, l.alpha_lr_factor);
  for (const ActivationQuantizer& a : act_) scale(a.alpha, a.alpha_lr_factor);
}

torch::Tensor QuantizedModel::Forward(const torch::Tensor& x) {
  return model_.forward({x}).toTensor();
}

}  // namespace qnet::engine
