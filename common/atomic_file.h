// Writes a file so that readers see either the old contents or the new, never a torn write: the
// bytes go to PATH.tmp first, which is then renamed over PATH. Artifacts, checkpoints and caches
// use it because a process killed mid-write must not leave a file that looks complete.
//
//   absl::Status s = qnet::WriteFileAtomically("/out/metrics.json", json.dump(2));
//   if (!s.ok()) return s;  // names the file and the failing step
#ifndef QNET_COMMON_ATOMIC_FILE_H_
#define QNET_COMMON_ATOMIC_FILE_H_

#include <string>
#include <string_view>

#include "absl/status/status.h"

namespace qnet {

// Creates PATH's parent directories when missing. INTERNAL naming the path on any failure; the
// temporary file is removed then.
absl::Status WriteFileAtomically(const std::string& path, std::string_view data);

}  // namespace qnet

#endif  // QNET_COMMON_ATOMIC_FILE_H_
