// KeepTrainingBuffersInHeap: a buffer the size of a training step's activations, freed and
// allocated again, reuses pages already mapped instead of faulting in fresh ones. A binary of its
// own, since the setting is process-wide.
#include "workers/engine/training/heap.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>

namespace qnet::engine {
namespace {

// Allocates, touches every page of and frees a buffer of `bytes`; returns the page faults it took.
long FaultsToFill(std::size_t bytes) {
  const long before = MinorPageFaults();
  auto* buffer = static_cast<char*>(std::malloc(bytes));
  if (buffer == nullptr) return -1;
  std::memset(buffer, 1, bytes);
  // Read back through a volatile so the stores cannot be elided with the free.
  const volatile char* read = buffer;
  const char last = read[bytes - 1];
  std::free(buffer);
  return last == 1 ? MinorPageFaults() - before : -1;
}

TEST(HeapTest, FreedStepBuffersAreReusedWithoutFaults) {
  // 64 MiB: over glibc's largest dynamic mmap threshold (32 MiB), so without the set-up every
  // allocation is a fresh mapping of 16,384 pages.
  constexpr std::size_t kBytes = std::size_t{64} << 20;
  constexpr long kPages = kBytes / 4096;
  ASSERT_TRUE(KeepTrainingBuffersInHeap());
  ASSERT_GE(FaultsToFill(kBytes), 0);  // the first step maps the pages
  for (int step = 0; step < 3; ++step) {
    const long faults = FaultsToFill(kBytes);
    ASSERT_GE(faults, 0);
    EXPECT_LT(faults, kPages / 16) << "step " << step << " faulted in fresh pages";
  }
}

}  // namespace
}  // namespace qnet::engine
