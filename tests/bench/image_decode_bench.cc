// JPEG decoding as the image dataset formats do it (datasets/image_decoder.h: libjpeg-turbo,
// then HWC to CHW), one thread, for the sizes of CIFAR-style (32x32) and ImageNet-style (224x224)
// images. The images are textured (a gradient plus deterministic noise) RGB at quality 95, so they
// decode about as slowly as photographs of that size.
//
//   build/tests/bench/qnet_image_decode_bench --benchmark_min_time=2s
#include <benchmark/benchmark.h>

#include <cstdint>
#include <vector>

#include "datasets/image_decoder.h"
#include "tests/datasets/image_files.h"

namespace qnet::datasets {
namespace {

std::vector<uint8_t> TexturedJpeg(int64_t side) {
  Image image{{3, side, side}, {}};
  uint32_t noise = 12345;
  for (int64_t c = 0; c < 3; ++c) {
    for (int64_t y = 0; y < side; ++y) {
      for (int64_t x = 0; x < side; ++x) {
        noise = noise * 1664525 + 1013904223;
        image.pixels.push_back(
            static_cast<uint8_t>((x * 255 / side + c * 60 + (noise >> 27)) % 256));
      }
    }
  }
  return qnet::testing::EncodeJpeg(image);
}

void BM_DecodeJpeg(benchmark::State& state) {
  const std::vector<uint8_t> jpeg = TexturedJpeg(state.range(0));
  for (auto _ : state) {
    absl::StatusOr<Image> image = DecodeImage("bench.jpg", jpeg, 3);
    if (!image.ok()) state.SkipWithError(std::string(image.status().message()).c_str());
    benchmark::DoNotOptimize(image->pixels.data());
  }
  state.SetItemsProcessed(state.iterations());
  state.counters["jpeg_bytes"] = static_cast<double>(jpeg.size());
}
BENCHMARK(BM_DecodeJpeg)->Arg(32)->Arg(224)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace qnet::datasets

BENCHMARK_MAIN();
