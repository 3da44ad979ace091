// The QN model transform: turns a TorchScript classifier (a user's scripted/traced model or a zoo
// model) into one that trains with Quantization Networks quantizers (docs/METHOD.md).
//
// Layers are found by what the forward pass does with them (model_graph.h): every module whose
// float `weight` is the weight operand of a 2-D convolution (grouped and depthwise included) or a
// linear op. The first and the last of them to run stay float unless quantize_first_last.
// Each quantized layer keeps a float latent weight (a leaf that the optimizer updates) and a
// weight quantizer (learnable alpha, beta; fixed thresholds unless learn_thresholds); every step
// RefreshWeights() sets the layer's `weight` attribute to Quantize(latent) so autograd reaches the
// latent and the quantizer parameters.
//
// The root forward is inlined into one graph. Activations (activation_bits > 0): a
// QnetActivationQuantizerTraining submodule of the root is called on the input of every use of
// each quantized layer except the first layer to run (its input is the image), whatever op
// produced that input. It runs the fused op through the TorchScript operator qnet::qn_quantize, so
// training costs one pass per activation instead of an ATen chain. Its levels start unsigned
// (spec.activation_levels) and become signed where calibration sees negative inputs
// (SetActivationLevels). The exported artifact uses plain-ATen quantizers instead (export.h).
// Batch norms follow their module's training flag (a model traced in eval mode has it baked in)
// and take their momentum from the root attribute kBatchNormMomentumAttr while it is >= 0, which
// batch-norm re-estimation uses (training/evaluation.h).
//
//   absl::StatusOr<std::unique_ptr<QuantizedModel>> q =
//       QuantizedModel::Create(float_model.clone(), spec);   // the module is modified in place
//   (*q)->SetTemperature(10.0);
//   (*q)->RefreshWeights();                                   // every step, before forward
//   torch::Tensor logits = (*q)->Forward(images);
#ifndef QNET_WORKERS_ENGINE_TRANSFORM_TRANSFORM_H_
#define QNET_WORKERS_ENGINE_TRANSFORM_TRANSFORM_H_

#include <memory>
#include <string>
#include <vector>

#include <torch/script.h>
#include <torch/torch.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace qnet::engine {

struct QuantSpec {
  torch::Tensor weight_levels;      // 1-D sorted levels q_0..q_n
  torch::Tensor activation_levels;  // undefined: float activations; unsigned (after ReLU)
  // For inputs that calibration finds negative (docs/METHOD.md); undefined: unsigned everywhere.
  torch::Tensor signed_activation_levels;
  bool quantize_first_last = false;
  bool learn_thresholds = false;
};

// One quantized Conv2d/Linear layer.
struct QuantizedLayer {
  std::string name;  // qualified submodule name, e.g. "layer1.0.conv1"
  torch::jit::Module module;
  torch::Tensor latent;        // float latent weight (leaf, requires grad)
  torch::Tensor alpha, beta;   // 0-dim learnable leaves
  torch::Tensor levels;        // 1-D, on the model's device
  torch::Tensor thresholds;    // 1-D; a learnable leaf only with learn_thresholds
  double alpha_lr_factor = 1;  // StepSizeLrFactor(levels), read once rather than every step
};

// One activation quantizer submodule; its tensors are the module's own attributes.
struct ActivationQuantizer {
  std::string name;   // qualified name of the quantizer submodule
  std::string layer;  // the quantized layer whose input it quantizes
  torch::jit::Module module;
  torch::Tensor alpha, beta, levels, thresholds;
  double alpha_lr_factor = 1;  // StepSizeLrFactor(levels)
};

// A layer found by FindQuantizableLayers.
struct LayerRef {
  std::string name;  // module path
  torch::jit::Module module;
  bool is_conv = false;
  int64_t in_channels = 0;  // conv: weight.size(1) * groups; linear: in_features
  bool quantize = false;    // false for the first and last layer unless quantize_first_last
};

// The conv (4-D weight) and linear (2-D weight) layers in the order the forward pass first uses
// them, each module once (a shared submodule, one registered under two names, or one whose weight
// a functional call uses is still one layer, under the first path that reaches it). Note that
// Module::clone(), which the trainer and the export apply to the float model, copies a submodule
// registered under two names once per name: in the clone they are two layers, consistently.
std::vector<LayerRef> FindQuantizableLayers(const torch::jit::Module& model,
                                            bool quantize_first_last);

// The submodule at a dotted path ("" is the root); NotFound otherwise.
absl::StatusOr<torch::jit::Module> SubmoduleAt(const torch::jit::Module& root,
                                               const std::string& path);

// OK when `layers` (FindQuantizableLayers) has a layer to quantize; otherwise INVALID_ARGUMENT
// saying why (no conv/linear layer at all, or only the first and last, which stay float).
absl::Status CheckSomethingToQuantize(const std::vector<LayerRef>& layers);

// Activation-quantizer submodule of `flavour`:
//   kTraining: forward calls qnet::qn_quantize (fused autograd op) and can record its inputs for
//              calibration; attributes alpha, beta (parameters), levels, thresholds (buffers),
//              temperature, hard, enabled, calibrating, observed (a list: one entry per call).
//   kExport:   "QnetActivationQuantizer", plain ATen only (loads in stock PyTorch); attributes
//              alpha, beta, levels, thresholds, temperature, hard.
enum class QuantizerFlavour { kTraining, kExport };

// Inlines the root forward (InlineForward) and quantizes the input of every use of the named layers
// (module paths): `make_quantizer(layer)` gives the module to register, once per layer, as a
// submodule of the root; every conv/linear op using that layer's weight calls it on its input.
// Returns the quantizers' names, one per layer; "" for a layer the forward never uses.
absl::StatusOr<std::vector<std::string>> InsertActivationQuantizers(
    torch::jit::Module& model, const std::vector<std::string>& layers,
    const std::function<torch::jit::Module(const std::string& layer)>& make_quantizer);

// A fresh, unregistered quantizer module of the given flavour (levels/thresholds as given).
torch::jit::Module MakeActivationQuantizerModule(QuantizerFlavour flavour,
                                                 const torch::Tensor& levels,
                                                 const torch::Tensor& thresholds, double alpha,
                                                 double beta);

// The root attribute a transformed model's batch norms take their momentum from while it is >= 0
// (-1 otherwise); absent when the model has no batch norm with running statistics.
inline constexpr char kBatchNormMomentumAttr[] = "qnet_bn_momentum";

// The batch-norm modules with running statistics that the forward pass uses, each once.
std::vector<torch::jit::Module> FindBatchNorms(const torch::jit::Module& model);

class QuantizedModel {
 public:
  // Transforms `model` in place (pass a clone whose graphs have not run yet: a method's graph
  // executor caches its plan on the first call). Initialises the weight quantizers from the
  // current weights (levels.h); activation quantizers start at range 1 until Calibrate.
  static absl::StatusOr<std::unique_ptr<QuantizedModel>> Create(torch::jit::Module model,
                                                                const QuantSpec& spec);

  torch::jit::Module& module() { return model_; }
  std::vector<QuantizedLayer>& layers() { return layers_; }
  std::vector<ActivationQuantizer>& activation_quantizers() { return act_; }
  const QuantSpec& spec() const { return spec_; }

  // Parameters of the underlying module that the optimizer trains besides latents and quantizer
  // parameters: biases, batch-norm affine, unquantized layers' weights. Excludes quantized
  // layers' `weight` (overwritten each step) and the quantizers' own attributes.
  std::vector<torch::Tensor> OtherParameters() const;
  std::vector<torch::Tensor> LatentWeights() const;
  std::vector<torch::Tensor> WeightQuantizerParameters() const;      // alpha, beta (+thresholds)
  std::vector<torch::Tensor> ActivationQuantizerParameters() const;  // alpha, beta

  // The soft functions' temperatures: weight quantizers use weight_t, activation quantizers
  // activation_t (the trainer gives each its own schedule).
  void SetTemperature(double weight_t, double activation_t);
  void SetTemperature(double t) { SetTemperature(t, t); }
  double weight_temperature() const { return weight_temperature_; }
  double activation_temperature() const { return activation_temperature_; }
  // Hard: unit steps (inference); soft: sigmoids at the temperature. Either way the backward is
  // the soft function's gradient (quantizer.h), so a hard activation quantizer still trains.
  void SetHard(bool weights_hard, bool activations_hard);
  void SetHard(bool hard) { SetHard(hard, hard); }
  void SetActivationsEnabled(bool enabled);
  // Sets every quantized layer's weight from its latent (soft or hard per SetHard). Call after
  // each optimizer step (and under NoGradGuard for evaluation).
  void RefreshWeights();
  // Hard weight codes j (int64, latent's shape): alpha * levels[j] is the hard weight.
  torch::Tensor HardCodes(const QuantizedLayer& layer) const;

  // Activation calibration: enable recording, run a forward, then take each quantizer's inputs.
  void SetCalibrating(bool on);
  // One flat tensor per activation quantizer: every value it was called on since the last take
  // (a layer used twice contributes both inputs); empty when it was not reached.
  std::vector<torch::Tensor> TakeObservedActivations();
  // Sets an activation quantizer's alpha/beta/thresholds (from levels.h's initialisation).
  void SetActivationQuantizer(size_t index, double alpha, double beta,
                              const torch::Tensor& thresholds);
  // Replaces an activation quantizer's levels and thresholds, whose count may change (unsigned to
  // signed levels).
  void SetActivationLevels(size_t index, const torch::Tensor& levels,
                           const torch::Tensor& thresholds);

  // Multiplies the gradient of every quantizer's alpha by its alpha_lr_factor: alpha then learns
  // at that factor times the learning rate.
  void ScaleStepSizeGradients();

  torch::Tensor Forward(const torch::Tensor& x);

 private:
  QuantizedModel(torch::jit::Module model, QuantSpec spec)
      : model_(std::move(model)), spec_(std::move(spec)) {}

  torch::jit::Module model_;
  QuantSpec spec_;
  std::vector<QuantizedLayer> layers_;
  std::vector<ActivationQuantizer> act_;
  double weight_temperature_ = 1.0;
  double activation_temperature_ = 1.0;
  bool weights_hard_ = false;
};

}  // namespace qnet::engine

#endif  // QNET_WORKERS_ENGINE_TRANSFORM_TRANSFORM_H_
