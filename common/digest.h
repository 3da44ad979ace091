// Content digests: "sha256:<64 lowercase hex>" names every blob (models, datasets, checkpoints,
// artifacts) on the server, in worker caches and in job records.
//
//   qnet::Sha256 h;
//   h.Update(bytes);
//   std::string digest = h.Digest();  // "sha256:9f86d0..."
//   absl::StatusOr<std::string> d = qnet::FileDigest("/tmp/model.pt");
#ifndef QNET_COMMON_DIGEST_H_
#define QNET_COMMON_DIGEST_H_

#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace qnet {

// Incremental SHA-256.
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  void Update(std::string_view data);
  // "sha256:<hex>"; call once.
  std::string Digest();

 private:
  struct State;
  std::unique_ptr<State> state_;
};

std::string DigestOf(std::string_view data);
absl::StatusOr<std::string> FileDigest(const std::string& path);

// True for "sha256:" followed by exactly 64 lowercase hex digits (safe as a file name).
bool IsValidDigest(std::string_view digest);

}  // namespace qnet

#endif  // QNET_COMMON_DIGEST_H_
