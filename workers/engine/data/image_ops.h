// The image operations of the engine's input pipeline (docs/METHOD.md, "Input pipeline"), on one
// image as a [C, H, W] tensor. Evaluation follows torchvision.transforms.v2 on uint8 tensors
// exactly (same ATen kernels, same output sizes and crop anchors), so a model evaluated in PyTorch
// with Resize(resize_size) + CenterCrop(H, W) sees the same pixels as in qnet:
//
//   torch::Tensor x = ResizeCenterCrop(image, /*resize_size=*/256, 224, 224);  // uint8 [3,224,224]
//   torch::Tensor y = AugmentSample(x, {.crop = Crop::kRandomResized, .flip = true}, sample_seed);
//
// Training augmentation draws its parameters from a per-sample seed, so any thread can augment any
// sample and get the same result.
#ifndef QNET_WORKERS_ENGINE_DATA_IMAGE_OPS_H_
#define QNET_WORKERS_ENGINE_DATA_IMAGE_OPS_H_

#include <cstdint>
#include <string>
#include <utility>

#include <torch/torch.h>

#include "absl/status/statusor.h"

namespace qnet::engine {

// SplitMix64: turns (seed, stream) pairs into well-spread seeds.
uint64_t MixSeed(uint64_t seed, uint64_t stream);

// A small counter-based generator for augmentation parameters (a sample's whole draw comes from
// its own seed, independent of which thread augments it).
class SampleRandom {
 public:
  explicit SampleRandom(uint64_t seed) : state_(seed) {}
  double Uniform();                        // [0, 1)
  int64_t Int(int64_t low, int64_t high);  // [low, high), high > low
 private:
  uint64_t state_;
};

// torchvision's Resize(size) output (height, width) for an h x w image: the shorter side becomes
// `size`, the longer one is scaled and truncated.
std::pair<int64_t, int64_t> ResizedSize(int64_t h, int64_t w, int64_t size);

// Bilinear resize to exactly height x width with antialiasing (torchvision's tensor Resize with
// antialias=True; uint8 stays uint8, rounded as torchvision rounds). Any dtype torch interpolates.
torch::Tensor ResizeImage(const torch::Tensor& image, int64_t height, int64_t width);

// torchvision's CenterCrop: the anchor rounds half to even, an image smaller than the crop is
// zero-padded first.
torch::Tensor CenterCrop(const torch::Tensor& image, int64_t height, int64_t width);

// Evaluation: Resize(resize_size) then CenterCrop(height, width).
torch::Tensor ResizeCenterCrop(const torch::Tensor& image, int64_t resize_size, int64_t height,
                               int64_t width);

// A one-channel image repeated to `channels` (3), or the image itself when it already has them.
// INVALID_ARGUMENT for any other pair (a colour image cannot feed a one-channel model).
absl::StatusOr<torch::Tensor> AdaptChannels(const torch::Tensor& image, int64_t channels);

enum class Crop {
  kNone,
  kPad4,           // CIFAR-style: zero-pad 4 pixels, crop a random window of the original size
  kRandomResized,  // torchvision's RandomResizedCrop(H, W, scale, ratio=(3/4, 4/3))
};
std::string CropName(Crop crop);  // "none", "pad4", "random_resized"

struct Augmentation {
  Crop crop = Crop::kNone;
  double scale_min = 0.08, scale_max = 1.0;  // area fractions for kRandomResized
  bool flip = false;                         // RandomHorizontalFlip(0.5)

  bool any() const { return crop != Crop::kNone || flip; }
};

struct CropBox {
  int64_t top = 0, left = 0, height = 0, width = 0;
};
// torchvision's RandomResizedCrop.get_params for an h x w image: ten tries at an area in
// [scale_min, scale_max] x h*w and a log-uniform aspect ratio in [3/4, 4/3], then the central
// crop clamped to that ratio range.
CropBox RandomResizedCropBox(int64_t h, int64_t w, double scale_min, double scale_max,
                             SampleRandom& random);

// One training image augmented ([C, H, W] in, same shape and dtype out), parameters drawn from
// `sample_seed` alone. Without any augmentation, `image` itself.
torch::Tensor AugmentSample(const torch::Tensor& image, const Augmentation& augmentation,
                            uint64_t sample_seed);

}  // namespace qnet::engine

#endif  // QNET_WORKERS_ENGINE_DATA_IMAGE_OPS_H_
