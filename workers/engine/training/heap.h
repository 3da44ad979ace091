// The process's heap set up for training: large buffers stay mapped between steps.
//
// A training step allocates and frees the same large buffers every step (activations and
// gradients: megabytes to hundreds of megabytes each; the quantizer keeps its own outputs'
// storages, quantize_buffers.h, but no other op does). glibc's malloc serves a request
// over its mmap threshold (dynamic, at most 32 MiB) with fresh pages and unmaps them on free, and
// it returns free memory at the top of the heap to the kernel past its trim threshold. Either way
// the next step touches new pages and pays a page fault per 4 KiB: on ResNet-18 at batch 128 that
// was about 12,000 faults per W4 step (docs/BENCHMARKS.md, "Page faults"). Raising both thresholds
// keeps freed buffers in the heap for the next step to reuse.
//
// The cost is memory held, not grown: at most kTrimThreshold of free heap stays mapped above what
// the largest step needed. Call once at process start, before any thread allocates.
//
//   int main(int argc, char** argv) {
//     qnet::engine::KeepTrainingBuffersInHeap();
//     ...
//   }
#ifndef QNET_WORKERS_ENGINE_TRAINING_HEAP_H_
#define QNET_WORKERS_ENGINE_TRAINING_HEAP_H_

#include <cstddef>

namespace qnet::engine {

// Requests at or below this size come from the heap; larger ones are mapped on their own.
inline constexpr std::size_t kMmapThreshold = std::size_t{1} << 30;
// Free memory at the top of the heap beyond this is returned to the kernel.
inline constexpr std::size_t kTrimThreshold = std::size_t{1} << 30;

// Sets both thresholds (mallopt). False when the C library refused either setting; the process
// then runs as before, only with more page faults.
bool KeepTrainingBuffersInHeap();

// Minor page faults the process has taken so far (getrusage): how a bench or test sees whether a
// step's buffers came from pages already mapped.
long MinorPageFaults();

}  // namespace qnet::engine

#endif  // QNET_WORKERS_ENGINE_TRAINING_HEAP_H_
