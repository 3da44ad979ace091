// BlobStore: content-addressed files on local disk: uploaded models and datasets, worker
// checkpoints and artifacts, all named by "sha256:<hex>" and stored at ROOT/sha256/<hex>. An upload
// streams into a temp file under ROOT/tmp while it is hashed; Commit checks the size and (when the
// client named one) the digest, fsyncs and renames it into place, so a blob is either complete
// and verified or absent. An upload dropped before Commit leaves nothing behind, except a
// resumable one (it names its digest): its bytes stay under ROOT/tmp/partial-<hex> so the next
// upload of that digest continues where it broke off (PartialUploadSize); partial files older
// than a day are removed when the store opens. Remove deletes a blob (the blob collector's, when
// nothing references it); the store keeps the total size of its blobs for the disk-use gauge.
//
//   auto store = BlobStore::Open(data_dir + "/blobs", /*max_blob_bytes=*/1 << 30);
//   auto upload = (*store)->StartUpload(/*declared_size=*/n, /*expected_digest=*/"");
//   (*upload)->Append(chunk);             // RESOURCE_EXHAUSTED past the limit
//   absl::StatusOr<BlobInfo> blob = (*upload)->Commit();
//   auto reader = (*store)->OpenReader(blob->digest, /*offset=*/0);
//   absl::StatusOr<std::string> data = (*reader)->Read(1 << 20);  // "" at the end
#ifndef QNET_SERVER_BLOBS_BLOB_STORE_H_
#define QNET_SERVER_BLOBS_BLOB_STORE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/digest.h"

namespace qnet::server {

struct BlobInfo {
  std::string digest;  // "sha256:<hex>"
  int64_t size_bytes = 0;
};

// A stored blob as the collector sees it.
struct StoredBlob {
  std::string digest;
  int64_t size_bytes = 0;
  absl::Time modified;  // when it was last stored (an upload of the same content renews it)
};

class BlobStore {
 public:
  // One upload in progress. Not thread-safe; destroying it before Commit discards the data
  // (a resumable upload's stays for the next attempt).
  class Upload {
   public:
    ~Upload();
    Upload(const Upload&) = delete;
    Upload& operator=(const Upload&) = delete;

    // RESOURCE_EXHAUSTED past the store's limit; INVALID_ARGUMENT past the declared size.
    absl::Status Append(absl::string_view data);
    // INVALID_ARGUMENT when the size or digest does not match what was declared.
    absl::StatusOr<BlobInfo> Commit();
    int64_t bytes_received() const { return received_; }

   private:
    friend class BlobStore;
    Upload(const BlobStore* store, int fd, std::string temp_path, int64_t declared_size,
           std::string expected_digest, int64_t limit, bool resumable);
    void Discard();
    // A resumable upload that ends without Commit keeps its bytes for the next attempt.
    void KeepForResume();

    const BlobStore* store_;
    int fd_;
    std::string temp_path_;
    const int64_t declared_size_;  // 0 = not declared
    const std::string expected_digest_;
    const int64_t limit_;
    const bool resumable_;
    int64_t received_ = 0;
    Sha256 hash_;
    bool done_ = false;
  };

  // Sequential reads of one blob from an offset. The content is hashed as it is read: the read
  // that reaches the end fails DATA_LOSS, withholding its bytes, when the file no longer matches
  // its digest (changed on disk), so a corrupt blob is never served whole.
  class Reader {
   public:
    ~Reader();
    Reader(const Reader&) = delete;
    Reader& operator=(const Reader&) = delete;
    // Up to `max_bytes` from the current offset; "" at the end.
    absl::StatusOr<std::string> Read(size_t max_bytes);
    int64_t offset() const { return offset_; }
    int64_t size() const { return size_; }

   private:
    friend class BlobStore;
    Reader(int fd, int64_t offset, int64_t size, std::string digest)
        : fd_(fd), offset_(offset), size_(size), digest_(std::move(digest)) {}
    // Reads [at, at + n) into `data`; fewer bytes only at the end of the file.
    absl::Status ReadAt(int64_t at, size_t n, std::string& data) const;
    int fd_;
    int64_t offset_;
    int64_t size_;
    const std::string digest_;
    Sha256 hash_;  // of the bytes before offset_
    bool verified_ = false;
  };

  // Creates ROOT/sha256 and ROOT/tmp as needed and removes temp files left by a crash.
  static absl::StatusOr<std::unique_ptr<BlobStore>> Open(const std::string& root,
                                                         int64_t max_blob_bytes);

  // declared_size: total size (0 = unknown), checked against the limit up front.
  // expected_digest: "" or "sha256:<hex>", verified at Commit.
  absl::StatusOr<std::unique_ptr<Upload>> StartUpload(int64_t declared_size,
                                                      const std::string& expected_digest) const;
  // An upload of `digest` (declared_size > 0) whose bytes survive an interruption. `offset`: the
  // bytes before it are those an earlier attempt left (any beyond it are dropped); OUT_OF_RANGE
  // past what the store holds. While another upload of the digest runs, offset 0 falls back to
  // an ordinary upload and any other offset gets ABORTED (retry once that one ends).
  absl::StatusOr<std::unique_ptr<Upload>> StartResumableUpload(int64_t declared_size,
                                                               const std::string& digest,
                                                               int64_t offset) const;
  // Bytes an interrupted resumable upload of `digest` left; 0 when none.
  int64_t PartialUploadSize(absl::string_view digest) const;
  // The identity that began the resumable upload of `digest`, kept in a file beside its bytes so
  // that only it can continue the upload after a restart too; "" when none is recorded.
  std::string PartialOwner(absl::string_view digest) const;
  absl::Status SetPartialOwner(absl::string_view digest, const std::string& owner) const;
  // Size of a stored blob; INVALID_ARGUMENT for a malformed digest, NOT_FOUND if absent.
  absl::StatusOr<int64_t> Stat(absl::string_view digest) const;
  bool Contains(absl::string_view digest) const { return Stat(digest).ok(); }
  // OUT_OF_RANGE when offset is past the end. From an offset, the bytes before it are hashed
  // first (read once more), so resumed reads are verified too.
  absl::StatusOr<std::unique_ptr<Reader>> OpenReader(absl::string_view digest,
                                                     int64_t offset) const;
  // Where a blob lives (the digest must be valid).
  std::string PathOf(absl::string_view digest) const;
  // Copies a local file in (no size limit: this is for operator-provided files).
  absl::StatusOr<BlobInfo> ImportFile(const std::string& path) const;

  // Every stored blob, in no particular order.
  absl::StatusOr<std::vector<StoredBlob>> List() const;
  // Deletes a stored blob; NOT_FOUND when it is not there.
  absl::Status Remove(absl::string_view digest) const;
  // Bytes of every stored blob together.
  int64_t total_bytes() const;

  int64_t max_blob_bytes() const { return max_blob_bytes_; }
  const std::string& root() const { return root_; }

 private:
  BlobStore(std::string root, int64_t max_blob_bytes)
      : root_(std::move(root)), max_blob_bytes_(max_blob_bytes) {}
  absl::StatusOr<std::unique_ptr<Upload>> Start(int64_t declared_size,
                                                const std::string& expected_digest,
                                                int64_t limit) const;
  std::string PartialPathOf(absl::string_view digest) const;
  void ReleaseResumable(const std::string& digest) const;

  const std::string root_;
  const int64_t max_blob_bytes_;
  mutable absl::Mutex mu_;
  // Digests with a resumable upload in progress: one writer per partial file.
  mutable absl::flat_hash_set<std::string> resuming_ ABSL_GUARDED_BY(mu_);
  // Serializes placing and removing blobs, so total_bytes_ counts each file once.
  mutable absl::Mutex files_mu_;
  mutable int64_t total_bytes_ ABSL_GUARDED_BY(files_mu_) = 0;
};

// INVALID_ARGUMENT unless `digest` is "sha256:" and 64 lowercase hex digits.
absl::Status CheckDigest(absl::string_view digest, absl::string_view what);

}  // namespace qnet::server

#endif  // QNET_SERVER_BLOBS_BLOB_STORE_H_
