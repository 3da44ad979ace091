#include "workers/engine/training/heap.h"

#include <malloc.h>
#include <sys/resource.h>

namespace qnet::engine {

bool KeepTrainingBuffersInHeap() {
  // mallopt returns 1 on success, 0 on a value it rejects.
  const bool mmap_set = mallopt(M_MMAP_THRESHOLD, static_cast<int>(kMmapThreshold)) == 1;
  const bool trim_set = mallopt(M_TRIM_THRESHOLD, static_cast<int>(kTrimThreshold)) == 1;
  return mmap_set && trim_set;
}

long MinorPageFaults() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_minflt;
}

}  // namespace qnet::engine
