// Runs a fuzz target without libFuzzer, as a quick regression test in ctest: each seed file given
// (or each file in a folder given), every prefix of it at a few lengths, and a fixed number of
// deterministic mutations (a few bytes overwritten, a span duplicated). A crash or abort fails the
// test; finding nothing proves only that these inputs are handled. Fuzzing for real needs clang
// (scripts/sanitize.sh fuzz; tests/fuzz/fuzz_target.cmake builds both kinds).
//
//   image_decoder_fuzz_replay [--mutations N] tests/datasets/fuzz/corpus/image_decoder
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

// xorshift64: a fixed sequence, so a failure reproduces.
class Random {
 public:
  uint64_t Next() {
    state_ ^= state_ << 13;
    state_ ^= state_ >> 7;
    state_ ^= state_ << 17;
    return state_;
  }
  size_t Below(size_t n) { return n == 0 ? 0 : Next() % n; }

 private:
  uint64_t state_ = 0x9e3779b97f4a7c15;
};

void Run(const std::vector<uint8_t>& input) { LLVMFuzzerTestOneInput(input.data(), input.size()); }

// Returns the number of inputs run.
int Replay(const std::vector<uint8_t>& seed, int mutations, Random& random) {
  int runs = 0;
  Run(seed), ++runs;
  for (size_t cut : {size_t{0}, size_t{1}, size_t{8}, seed.size() / 4, seed.size() / 2,
                     seed.size() * 3 / 4, seed.size() - 1}) {
    if (cut < seed.size()) Run(std::vector<uint8_t>(seed.begin(), seed.begin() + cut)), ++runs;
  }
  for (int m = 0; m < mutations && !seed.empty(); ++m) {
    std::vector<uint8_t> input = seed;
    const int edits = 1 + static_cast<int>(random.Below(4));
    for (int e = 0; e < edits; ++e) {
      const size_t at = random.Below(input.size());
      if (random.Below(8) == 0) {  // duplicate a span: lengths and counts go out of step
        const size_t length = random.Below(std::min<size_t>(64, input.size() - at)) + 1;
        input.insert(input.begin() + at, input.begin() + at, input.begin() + at + length);
      } else {
        input[at] = static_cast<uint8_t>(random.Next());
      }
    }
    Run(input), ++runs;
  }
  return runs;
}

}  // namespace

int main(int argc, char** argv) {
  int mutations = 2000;
  std::vector<std::filesystem::path> seeds;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--mutations" && i + 1 < argc) {
      mutations = std::stoi(argv[++i]);
    } else if (std::filesystem::is_directory(arg)) {
      for (const auto& entry : std::filesystem::directory_iterator(arg)) seeds.push_back(entry);
    } else {
      seeds.push_back(arg);
    }
  }
  if (seeds.empty()) {
    std::fprintf(stderr, "usage: %s [--mutations N] SEED_FILE_OR_FOLDER...\n", argv[0]);
    return 2;
  }
  std::sort(seeds.begin(), seeds.end());
  Random random;
  int runs = 0;
  for (const std::filesystem::path& path : seeds) {
    std::ifstream in(path, std::ios::binary);
    const std::vector<uint8_t> seed((std::istreambuf_iterator<char>(in)),
                                    std::istreambuf_iterator<char>());
    runs += Replay(seed, mutations, random);
  }
  std::printf("%d inputs from %zu seeds: no crash\n", runs, seeds.size());
  return 0;
}
