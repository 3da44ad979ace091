#include "workers/engine/data/image_ops.h"

#include <algorithm>
#include <array>
#include <cmath>

#include <ATen/Version.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace qnet::engine {
namespace {

// torchvision keeps uint8 through the bilinear kernel where ATen has a native uint8 path (x86
// with AVX2 or better, ARM); elsewhere it resizes in float and rounds.
bool NativeUint8Resize() {
  static const bool native = [] {
#if defined(__aarch64__)
    return true;
#else
    const std::string cap = at::get_cpu_capability();
    return cap == "AVX2" || cap == "AVX512";
#endif
  }();
  return native;
}

// Python's round(): half to even (the default floating-point rounding mode).
int64_t RoundHalfEven(double v) { return static_cast<int64_t>(std::nearbyint(v)); }

}  // namespace

uint64_t MixSeed(uint64_t seed, uint64_t stream) {
  uint64_t z = seed ^ (stream * 0x9e3779b97f4a7c15ULL + 0x632be59bd9b4e019ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

double SampleRandom::Uniform() {
  state_ += 0x9e3779b97f4a7c15ULL;
  return static_cast<double>(MixSeed(state_, 0) >> 11) * 0x1.0p-53;
}

int64_t SampleRandom::Int(int64_t low, int64_t high) {
  const auto span = static_cast<double>(high - low);
  return std::min(high - 1, low + static_cast<int64_t>(Uniform() * span));
}

std::pair<int64_t, int64_t> ResizedSize(int64_t h, int64_t w, int64_t size) {
  const int64_t shorter = std::min(h, w), longer = std::max(h, w);
  // As Python computes int(size * long / short): integer product, true division, truncation.
  const auto scaled =
      static_cast<int64_t>(static_cast<double>(size * longer) / static_cast<double>(shorter));
  return w <= h ? std::pair{scaled, size} : std::pair{size, scaled};
}

torch::Tensor ResizeImage(const torch::Tensor& image, int64_t height, int64_t width) {
  if (image.size(1) == height && image.size(2) == width) return image;
  const torch::Tensor batch = image.unsqueeze(0);
  const std::array<int64_t, 2> size = {height, width};
  if (image.scalar_type() != torch::kUInt8 || NativeUint8Resize()) {
    return at::_upsample_bilinear2d_aa(batch, at::IntArrayRef(size), /*align_corners=*/false,
                                       std::nullopt)[0];
  }
  return at::_upsample_bilinear2d_aa(batch.to(torch::kFloat), at::IntArrayRef(size), false,
                                     std::nullopt)[0]
      .round_()
      .to(torch::kUInt8);
}

torch::Tensor CenterCrop(const torch::Tensor& image, int64_t height, int64_t width) {
  torch::Tensor img = image;
  int64_t h = img.size(1), w = img.size(2);
  if (height > h || width > w) {
    const int64_t pad_w = std::max<int64_t>(0, width - w), pad_h = std::max<int64_t>(0, height - h);
    img = torch::constant_pad_nd(img, {pad_w / 2, (pad_w + 1) / 2, pad_h / 2, (pad_h + 1) / 2}, 0);
    h = img.size(1);
    w = img.size(2);
  }
  const int64_t top = RoundHalfEven(static_cast<double>(h - height) / 2.0);
  const int64_t left = RoundHalfEven(static_cast<double>(w - width) / 2.0);
  return img.slice(1, top, top + height).slice(2, left, left + width);
}

torch::Tensor ResizeCenterCrop(const torch::Tensor& image, int64_t resize_size, int64_t height,
                               int64_t width) {
  const auto [h, w] = ResizedSize(image.size(1), image.size(2), resize_size);
  return CenterCrop(ResizeImage(image, h, w), height, width);
}

absl::StatusOr<torch::Tensor> AdaptChannels(const torch::Tensor& image, int64_t channels) {
  const int64_t have = image.size(0);
  if (have == channels) return image;
  if (have == 1) return image.expand({channels, image.size(1), image.size(2)});
  return absl::InvalidArgumentError(absl::StrCat("a ", have, "-channel image cannot feed a model ",
                                                 "that takes ", channels, " channel(s)"));
}

std::string CropName(Crop crop) {
  switch (crop) {
    case Crop::kNone:
      return "none";
    case Crop::kPad4:
      return "pad4";
    case Crop::kRandomResized:
      return "random_resized";
  }
  return "none";
}

CropBox RandomResizedCropBox(int64_t h, int64_t w, double scale_min, double scale_max,
                             SampleRandom& random) {
  constexpr double kMinRatio = 3.0 / 4.0, kMaxRatio = 4.0 / 3.0;
  const double area = static_cast<double>(h * w);
  const double log_min = std::log(kMinRatio), log_max = std::log(kMaxRatio);
  for (int attempt = 0; attempt < 10; ++attempt) {
    const double target = area * (scale_min + (scale_max - scale_min) * random.Uniform());
    const double ratio = std::exp(log_min + (log_max - log_min) * random.Uniform());
    const int64_t cw = RoundHalfEven(std::sqrt(target * ratio));
    const int64_t ch = RoundHalfEven(std::sqrt(target / ratio));
    if (cw > 0 && cw <= w && ch > 0 && ch <= h) {
      const int64_t top = random.Int(0, h - ch + 1);
      return {top, random.Int(0, w - cw + 1), ch, cw};
    }
  }
  const double in_ratio = static_cast<double>(w) / static_cast<double>(h);
  int64_t cw = w, ch = h;
  if (in_ratio < kMinRatio) {
    ch = RoundHalfEven(static_cast<double>(w) / kMinRatio);
  } else if (in_ratio > kMaxRatio) {
    cw = RoundHalfEven(static_cast<double>(h) * kMaxRatio);
  }
  return {(h - ch) / 2, (w - cw) / 2, ch, cw};
}

torch::Tensor AugmentSample(const torch::Tensor& image, const Augmentation& augmentation,
                            uint64_t sample_seed) {
  if (!augmentation.any()) return image;
  SampleRandom random(sample_seed);
  const int64_t h = image.size(1), w = image.size(2);
  torch::Tensor out = image;
  switch (augmentation.crop) {
    case Crop::kNone:
      break;
    case Crop::kPad4: {
      constexpr int64_t kPad = 4;
      const int64_t dy = random.Int(0, 2 * kPad + 1), dx = random.Int(0, 2 * kPad + 1);
      out = torch::constant_pad_nd(image, {kPad, kPad, kPad, kPad}, 0)
                .slice(1, dy, dy + h)
                .slice(2, dx, dx + w);
      break;
    }
    case Crop::kRandomResized: {
      const CropBox box =
          RandomResizedCropBox(h, w, augmentation.scale_min, augmentation.scale_max, random);
      out = ResizeImage(image.slice(1, box.top, box.top + box.height)
                            .slice(2, box.left, box.left + box.width)
                            .contiguous(),
                        h, w);
      break;
    }
  }
  if (augmentation.flip && random.Uniform() < 0.5) out = out.flip({2});
  return out;
}

}  // namespace qnet::engine
