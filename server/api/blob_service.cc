#include "server/api/blob_service.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "server/api/grpc_status.h"
#include "server/auth/grpc_auth.h"
#include "spdlog/spdlog.h"

namespace qnet::server {

BlobServiceImpl::IdleUploads::IdleUploads(absl::Duration idle)
    : idle_(idle), thread_([this] { Run(); }) {}

BlobServiceImpl::IdleUploads::~IdleUploads() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void BlobServiceImpl::IdleUploads::Touch(grpc::ServerContext* context) {
  std::lock_guard<std::mutex> lock(mu_);
  last_activity_[context] = absl::Now();
}

bool BlobServiceImpl::IdleUploads::Remove(grpc::ServerContext* context) {
  std::lock_guard<std::mutex> lock(mu_);
  last_activity_.erase(context);
  return expired_.erase(context) > 0;
}

void BlobServiceImpl::IdleUploads::Run() {
  // Checking a few times per period keeps an idle upload's life within 1.25 periods.
  const auto period = absl::ToChronoMilliseconds(std::max(idle_ / 4, absl::Milliseconds(10)));
  std::unique_lock<std::mutex> lock(mu_);
  while (!cv_.wait_for(lock, period, [this] { return stop_; })) {
    const absl::Time now = absl::Now();
    for (auto it = last_activity_.begin(); it != last_activity_.end();) {
      if (now - it->second < idle_) {
        ++it;
        continue;
      }
      it->first->TryCancel();  // the handler's Read returns false, then it calls Remove
      expired_.insert(it->first);
      last_activity_.erase(it++);
    }
  }
}

namespace {

absl::Status NotFound(const std::string& digest) {
  return absl::NotFoundError(absl::StrCat("blob ", digest, " not found; upload it first"));
}

}  // namespace

BlobServiceImpl::BlobServiceImpl(const BlobStore* store, MetricsRegistry* metrics,
                                 BlobGrants* grants, Scheduler* scheduler,
                                 const DatasetRegistry* datasets, const Authenticator* auth,
                                 absl::Duration upload_idle)
    : store_(store),
      metrics_(metrics),
      grants_(grants),
      scheduler_(scheduler),
      datasets_(datasets),
      auth_(auth),
      idle_uploads_(upload_idle) {}

BlobServiceImpl::~BlobServiceImpl() = default;

absl::Status BlobServiceImpl::MayRead(const grpc::ServerContext& context,
                                      const std::string& digest) {
  absl::StatusOr<Identity> caller = CallerIdentity(*auth_, context);
  if (!caller.ok()) return caller.status();
  if (caller->is_admin()) return absl::OkStatus();
  if (caller->role != Role::kWorker) {
    return grants_->HasAny(digest, caller->name) ? absl::OkStatus() : NotFound(digest);
  }
  // A worker sees what it uploaded for the jobs it holds now, so the same bytes uploaded for an
  // earlier job are uploaded again and recorded for this one.
  for (const qnet::v1::Job& job : scheduler_->LeasedBy(caller->name)) {
    if (job.spec().model() == digest || job.checkpoint_digest() == digest ||
        grants_->Has(digest, caller->name, job.id())) {
      return absl::OkStatus();
    }
    const std::optional<DatasetEntry> dataset = datasets_->Find(job.spec().dataset());
    if (!dataset.has_value()) continue;
    for (const qnet::v1::DatasetFile& f : dataset->files) {
      if (f.digest() == digest) return absl::OkStatus();
    }
  }
  return NotFound(digest);
}

absl::StatusOr<std::vector<std::string>> BlobServiceImpl::UploadJobs(const Identity& caller,
                                                                     const std::string& job_id) {
  std::vector<std::string> jobs;
  if (caller.role != Role::kWorker) {
    if (!job_id.empty()) {
      return absl::InvalidArgumentError("job_id is for workers' checkpoints and artifacts");
    }
    return jobs;
  }
  for (const qnet::v1::Job& job : scheduler_->LeasedBy(caller.name)) {
    if (job_id.empty() || job.id() == job_id) jobs.push_back(job.id());
  }
  if (!job_id.empty() && jobs.empty()) {
    return absl::PermissionDeniedError(
        absl::StrCat(caller.name, " does not hold job ", job_id, "; upload refused"));
  }
  return jobs;
}

grpc::Status BlobServiceImpl::Upload(grpc::ServerContext* context,
                                     grpc::ServerReader<qnet::v1::UploadRequest>* reader,
                                     qnet::v1::UploadResponse* response) {
  qnet::v1::UploadRequest msg;
  if (!reader->Read(&msg)) {
    return {grpc::StatusCode::INVALID_ARGUMENT, "empty upload: send the header first"};
  }
  if (!msg.has_header()) {
    return {grpc::StatusCode::INVALID_ARGUMENT,
            "the first upload message must be the header (size_bytes, digest, kind)"};
  }
  const qnet::v1::UploadHeader header = msg.header();
  absl::StatusOr<Identity> caller = CallerIdentity(*auth_, *context);
  if (!caller.ok()) return ToGrpcStatus(caller.status());
  absl::StatusOr<std::vector<std::string>> jobs = UploadJobs(*caller, header.job_id());
  if (!jobs.ok()) return ToGrpcStatus(jobs.status());
  // An upload for no job counts against the caller's upload quota (admins' are not recorded):
  // checked up front for the size it declares and again as its bytes arrive, so one that
  // declares none stops as soon as it passes the quota, not once it is stored.
  const bool quota_counted = jobs->empty() && !caller->is_admin();
  if (quota_counted) {
    if (absl::Status s = grants_->CheckUpload(caller->name, header.size_bytes()); !s.ok()) {
      return ToGrpcStatus(s);
    }
  }
  // An upload that names its content can be resumed after a break, by the identity that began it.
  bool resumable = !header.digest().empty() && header.size_bytes() > 0;
  if (!resumable && header.offset() != 0) {
    return {grpc::StatusCode::INVALID_ARGUMENT,
            "offset needs the header's digest and size_bytes (resuming an upload of that digest)"};
  }
  if (resumable) {
    absl::StatusOr<bool> own = ClaimResumable(header.digest(), caller->name, header.offset());
    if (!own.ok()) return ToGrpcStatus(own.status());
    resumable = *own;
  }
  absl::StatusOr<std::unique_ptr<BlobStore::Upload>> upload =
      resumable
          ? store_->StartResumableUpload(header.size_bytes(), header.digest(), header.offset())
          : store_->StartUpload(header.size_bytes(), header.digest());
  if (!upload.ok()) return ToGrpcStatus(upload.status());
  idle_uploads_.Touch(context);
  int64_t received = header.offset();
  bool more = true;
  while ((more = reader->Read(&msg))) {
    idle_uploads_.Touch(context);
    if (msg.has_header()) break;
    received += static_cast<int64_t>(msg.chunk().size());
    absl::Status s =
        quota_counted ? grants_->CheckUpload(caller->name, received) : absl::OkStatus();
    if (s.ok()) s = (*upload)->Append(msg.chunk());
    if (!s.ok()) {
      // Dropping the upload removes its bytes (a resumable one keeps them for a retry, which
      // the check up front refuses while the quota stays full).
      idle_uploads_.Remove(context);
      return ToGrpcStatus(s);
    }
    metrics_->BlobBytes(MetricsRegistry::BlobDirection::kUpload,
                        static_cast<int64_t>(msg.chunk().size()));
  }
  if (idle_uploads_.Remove(context)) {
    return {grpc::StatusCode::DEADLINE_EXCEEDED,
            "upload sent no data for too long (qnetd --upload-idle-seconds); discarded"};
  }
  if (more) {
    return {grpc::StatusCode::INVALID_ARGUMENT, "a second header in one upload; upload discarded"};
  }
  if (context->IsCancelled()) {
    return {grpc::StatusCode::CANCELLED, "upload cancelled by the client; discarded"};
  }
  absl::StatusOr<BlobInfo> blob = (*upload)->Commit();
  if (!blob.ok()) return ToGrpcStatus(blob.status());
  if (resumable) {
    absl::MutexLock lock(&resumable_mu_);
    resumable_owners_.erase(header.digest());
  }
  // Recorded before the reply, so a digest the caller was given is one it may use.
  if (!caller->is_admin()) {
    if (jobs->empty()) jobs->push_back("");
    for (const std::string& job : *jobs) {
      if (absl::Status s = grants_->Grant(blob->digest, caller->name, job); !s.ok()) {
        return ToGrpcStatus(s);
      }
    }
  }
  spdlog::debug("stored {} blob {} ({} bytes)", header.kind(), blob->digest, blob->size_bytes);
  response->set_digest(blob->digest);
  response->set_size_bytes(blob->size_bytes);
  return grpc::Status::OK;
}

grpc::Status BlobServiceImpl::Download(grpc::ServerContext* context,
                                       const qnet::v1::DownloadRequest* request,
                                       grpc::ServerWriter<qnet::v1::DownloadChunk>* writer) {
  if (absl::Status s = MayRead(*context, request->digest()); !s.ok()) return ToGrpcStatus(s);
  absl::StatusOr<std::unique_ptr<BlobStore::Reader>> reader =
      store_->OpenReader(request->digest(), request->offset());
  if (!reader.ok()) return ToGrpcStatus(reader.status());
  bool sent = false;
  while (true) {
    if (context->IsCancelled()) return {grpc::StatusCode::CANCELLED, "download cancelled"};
    qnet::v1::DownloadChunk chunk;
    chunk.set_offset((*reader)->offset());
    chunk.set_total_size((*reader)->size());
    absl::StatusOr<std::string> data = (*reader)->Read(kDownloadChunkBytes);
    if (!data.ok()) return ToGrpcStatus(data.status());
    if (data->empty() && sent) break;  // an empty blob (or offset == size) still gets one chunk
    const int64_t n = static_cast<int64_t>(data->size());
    chunk.set_data(*std::move(data));
    if (!writer->Write(chunk)) return {grpc::StatusCode::CANCELLED, "client went away"};
    metrics_->BlobBytes(MetricsRegistry::BlobDirection::kDownload, n);
    sent = true;
    if (n == 0) break;
  }
  return grpc::Status::OK;
}

grpc::Status BlobServiceImpl::StatBlob(grpc::ServerContext* context,
                                       const qnet::v1::StatBlobRequest* request,
                                       qnet::v1::StatBlobResponse* response) {
  if (absl::Status s = CheckDigest(request->digest(), "digest"); !s.ok()) return ToGrpcStatus(s);
  if (absl::Status s = MayRead(*context, request->digest()); !s.ok()) return ToGrpcStatus(s);
  absl::StatusOr<int64_t> size = store_->Stat(request->digest());
  if (!size.ok()) return ToGrpcStatus(size.status());
  response->set_size_bytes(*size);
  return grpc::Status::OK;
}

grpc::Status BlobServiceImpl::GetUploadOffset(grpc::ServerContext* context,
                                              const qnet::v1::GetUploadOffsetRequest* request,
                                              qnet::v1::GetUploadOffsetResponse* response) {
  if (absl::Status s = CheckDigest(request->digest(), "digest"); !s.ok()) return ToGrpcStatus(s);
  absl::StatusOr<Identity> caller = CallerIdentity(*auth_, *context);
  if (!caller.ok()) return ToGrpcStatus(caller.status());
  {
    // Another identity's upload is not there for the caller: 0, as for none, so its own upload
    // of the same bytes starts afresh (next to the other one, which stays intact).
    absl::MutexLock lock(&resumable_mu_);
    if (ResumableOwner(request->digest()) != caller->name) {
      response->set_offset(0);
      return grpc::Status::OK;
    }
  }
  response->set_offset(store_->PartialUploadSize(request->digest()));
  return grpc::Status::OK;
}

absl::StatusOr<bool> BlobServiceImpl::ClaimResumable(const std::string& digest,
                                                     const std::string& caller, int64_t offset) {
  absl::MutexLock lock(&resumable_mu_);
  const std::string owner = ResumableOwner(digest);
  if (offset > 0 && owner != caller) {
    // Unknown or another's: nothing the caller may continue.
    return absl::NotFoundError(absl::StrCat("no interrupted upload of ", digest,
                                            " by you to resume; upload it from offset 0"));
  }
  if (owner.empty()) {
    if (absl::Status s = store_->SetPartialOwner(digest, caller); !s.ok()) return s;
    resumable_owners_.emplace(digest, caller);
    return true;
  }
  return owner == caller;  // another's: this upload runs unresumable beside it
}

std::string BlobServiceImpl::ResumableOwner(const std::string& digest) {
  auto it = resumable_owners_.find(digest);
  if (it == resumable_owners_.end()) {
    // Begun before a restart: the store kept who began it.
    std::string owner = store_->PartialOwner(digest);
    if (owner.empty()) return owner;
    it = resumable_owners_.emplace(digest, std::move(owner)).first;
  }
  return it->second;
}

}  // namespace qnet::server
