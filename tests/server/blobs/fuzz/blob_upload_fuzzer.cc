// Fuzz target: the blob upload path below BlobService (server/blobs/blob_store.h), where a
// client's chunks, sizes, offsets and digests meet the disk. The input is a payload and then a
// script of upload attempts, as clients that retry, resume, lie about sizes and digests, corrupt
// chunks and go away make them; at most two attempts are open at once (the second may race the
// first for a resumable digest).
//
// Whatever the script, a committed blob must be exactly what its digest names: it reads back
// (from any offset) as bytes that hash to the digest and have the committed size, matching the
// declared size and digest when the upload named them; a plain upload stores exactly the bytes
// sent. No upload ever holds more than the store's limit or its declared size.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "common/digest.h"
#include "server/blobs/blob_store.h"
#include "tests/fuzz/scratch_dir.h"

namespace {

using qnet::server::BlobInfo;
using qnet::server::BlobStore;

constexpr int64_t kMaxBlobBytes = 16 << 10;

// Reads the script; past its end every value is 0.
class Script {
 public:
  Script(const uint8_t* data, size_t size) : data_(data), size_(size) {}
  bool done() const { return at_ >= size_; }
  uint8_t Byte() { return at_ < size_ ? data_[at_++] : 0; }
  uint16_t Short() { return static_cast<uint16_t>(Byte() | Byte() << 8); }
  std::string_view Bytes(size_t n) {
    n = std::min(n, size_ - std::min(at_, size_));
    const std::string_view out(reinterpret_cast<const char*>(data_) + at_, n);
    at_ += n;
    return out;
  }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t at_ = 0;
};

// Reads the whole blob back from `offset` in chunks whose sizes the script picks.
std::string ReadBack(const BlobStore& store, const std::string& digest, int64_t offset,
                     Script& script) {
  absl::StatusOr<std::unique_ptr<BlobStore::Reader>> reader = store.OpenReader(digest, offset);
  if (!reader.ok()) std::abort();  // a committed blob opens at any offset up to its size
  std::string out;
  while (true) {
    absl::StatusOr<std::string> chunk = (*reader)->Read((1 + script.Byte()) * 64);
    if (!chunk.ok()) std::abort();
    if (chunk->empty()) return out;
    out += *chunk;
  }
}

void CheckCommitted(const BlobStore& store, const BlobInfo& blob, int64_t declared_size,
                    const std::string& expected_digest, const std::optional<std::string>& sent,
                    Script& script) {
  const std::string stored = ReadBack(store, blob.digest, 0, script);
  if (qnet::DigestOf(stored) != blob.digest ||
      static_cast<int64_t>(stored.size()) != blob.size_bytes || blob.size_bytes > kMaxBlobBytes ||
      (declared_size > 0 && blob.size_bytes != declared_size) ||
      (!expected_digest.empty() && blob.digest != expected_digest) || (sent && stored != *sent)) {
    std::abort();
  }
  const int64_t offset = script.Short() % (blob.size_bytes + 2);
  if (offset > blob.size_bytes) {
    if (store.OpenReader(blob.digest, offset).ok()) std::abort();
  } else if (ReadBack(store, blob.digest, offset, script) != stored.substr(offset)) {
    std::abort();
  }
  if (store.Stat(blob.digest).value_or(-1) != blob.size_bytes) std::abort();
}

// One upload attempt; leaves an unfinished upload in `held` when the script says so.
void Attempt(const BlobStore& store, std::string_view payload, Script& script,
             std::unique_ptr<BlobStore::Upload>& held) {
  const std::string digest = qnet::DigestOf(payload);
  const uint8_t mode = script.Byte();
  std::string expected_digest;
  switch (mode % 4) {
    case 0:
      break;
    case 1:
    case 3:
      expected_digest = digest;
      break;
    case 2:
      expected_digest = qnet::DigestOf(script.Bytes(script.Byte() % 8));
      break;
  }
  const auto size = static_cast<int64_t>(payload.size());
  int64_t declared_size = 0;
  switch (script.Byte() % 4) {
    case 0:
      break;
    case 1:
      declared_size = size;
      break;
    case 2:
      declared_size = std::max<int64_t>(0, size + static_cast<int8_t>(script.Byte()));
      break;
    case 3:
      declared_size = script.Short() * 4;
      break;
  }
  const bool resumable = mode % 4 == 3;
  int64_t offset = 0;
  absl::StatusOr<std::unique_ptr<BlobStore::Upload>> upload;
  if (resumable) {
    switch (script.Byte() % 3) {
      case 0:
        offset = store.PartialUploadSize(digest);
        break;
      case 1:
        break;
      case 2:
        offset = script.Short();
        break;
    }
    upload = store.StartResumableUpload(declared_size, expected_digest, offset);
  } else {
    upload = store.StartUpload(declared_size, expected_digest);
  }
  if (store.PartialUploadSize(digest) > kMaxBlobBytes) std::abort();
  if (!upload.ok()) return;
  // Sends the payload from the offset in chunks, maybe one corrupted, maybe stopping early.
  std::string sent;
  for (int64_t at = offset; at < size;) {
    const int64_t n = std::min<int64_t>(size - at, (1 + script.Byte()) * 32);
    std::string chunk(payload.substr(at, n));
    const uint8_t action = script.Byte();
    if (action == 0xff) break;  // the client goes away
    if (action == 0xfe) chunk[0] ^= 1;
    if (!(*upload)->Append(chunk).ok()) break;
    sent += chunk;
    at += n;
    const int64_t received = (*upload)->bytes_received();
    if (received > kMaxBlobBytes || (declared_size > 0 && received > declared_size)) std::abort();
  }
  if (script.Byte() % 4 == 0) {
    held = *std::move(upload);  // stays open through the next attempt
    return;
  }
  absl::StatusOr<BlobInfo> blob = (*upload)->Commit();
  if (!blob.ok()) return;
  // A resumed upload's blob also holds what earlier attempts left.
  CheckCommitted(store, *blob, declared_size, expected_digest,
                 resumable ? std::nullopt : std::optional<std::string>(sent), script);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const qnet::fuzz::ScratchDir dir;
  dir.Clear();
  absl::StatusOr<std::unique_ptr<BlobStore>> store = BlobStore::Open(dir.path(), kMaxBlobBytes);
  if (!store.ok()) std::abort();
  Script script(data, size);
  const std::string digest_text(script.Bytes(script.Byte() % 80));
  if (qnet::server::CheckDigest(digest_text, "digest").ok() != qnet::IsValidDigest(digest_text) ||
      (!digest_text.empty() && !qnet::IsValidDigest(digest_text) &&  // "": no digest named
       (*store)->StartUpload(0, digest_text).ok())) {
    std::abort();
  }
  const std::string payload(script.Bytes(script.Short() % (kMaxBlobBytes + 64)));
  std::unique_ptr<BlobStore::Upload> held, next_held;
  for (int attempt = 0; attempt < 16 && !script.done(); ++attempt) {
    Attempt(**store, payload, script, next_held);
    held = std::move(next_held);  // the previous held upload ends here, uncommitted
  }
  return 0;
}
