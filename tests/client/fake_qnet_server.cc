#include "tests/client/fake_qnet_server.h"

#include <algorithm>
#include <string>
#include <thread>

#include "common/digest.h"
#include "common/job/catalog.h"

namespace qnet::testing {
namespace {

std::string Authorization(const grpc::ServerContext& context) {
  const auto it = context.client_metadata().find("authorization");
  return it == context.client_metadata().end() ? ""
                                               : std::string(it->second.data(), it->second.size());
}

}  // namespace

class FakeQnetServer::Jobs final : public v1::JobService::Service {
 public:
  explicit Jobs(FakeQnetServer& s) : s_(s) {}

  grpc::Status SubmitJob(grpc::ServerContext*, const v1::SubmitJobRequest* request,
                         v1::Job* response) override {
    auto state = s_.Lock();
    state->submits.push_back(*request);
    if (!state->submit_error.ok()) return state->submit_error;
    if (!request->request_id().empty()) {
      for (const auto& [id, job] : state->jobs) {
        if (job.request_id() == request->request_id()) {
          *response = job;
          return grpc::Status::OK;
        }
      }
    }
    v1::Job job;
    job.set_id("job-" + std::to_string(state->next_job++));
    *job.mutable_spec() = request->spec();
    job.set_state(v1::QUEUED);
    job.set_request_id(request->request_id());
    state->jobs[job.id()] = job;
    *response = job;
    return grpc::Status::OK;
  }

  grpc::Status GetJob(grpc::ServerContext*, const v1::GetJobRequest* request,
                      v1::Job* response) override {
    auto state = s_.Lock();
    auto it = state->jobs.find(request->id());
    if (it == state->jobs.end()) {
      return grpc::Status(grpc::StatusCode::NOT_FOUND, "job " + request->id() + " not found");
    }
    *response = it->second;
    return grpc::Status::OK;
  }

  grpc::Status ListJobs(grpc::ServerContext*, const v1::ListJobsRequest* request,
                        v1::ListJobsResponse* response) override {
    auto state = s_.Lock();
    ++state->list_calls;
    std::vector<const v1::Job*> matching;
    for (const auto& [id, job] : state->jobs) {
      if (request->state() == v1::JOB_STATE_UNSPECIFIED || job.state() == request->state()) {
        matching.push_back(&job);
      }
    }
    size_t start = request->page_token().empty() ? 0 : std::stoul(request->page_token());
    const size_t size = static_cast<size_t>(
        std::min(request->page_size() > 0 ? request->page_size() : 100, state->list_page_size));
    for (size_t i = start; i < matching.size() && i < start + size; ++i) {
      *response->add_jobs() = *matching[i];
    }
    if (start + size < matching.size()) response->set_next_page_token(std::to_string(start + size));
    return grpc::Status::OK;
  }

  grpc::Status WatchJob(grpc::ServerContext* context, const v1::WatchJobRequest* request,
                        grpc::ServerWriter<v1::Job>* writer) override {
    std::vector<v1::Job> script;
    std::chrono::milliseconds delay;
    {
      auto state = s_.Lock();
      auto it = state->jobs.find(request->id());
      if (it == state->jobs.end()) {
        return grpc::Status(grpc::StatusCode::NOT_FOUND, "job " + request->id() + " not found");
      }
      script = state->watch_script;
      if (script.empty()) script.push_back(it->second);
      delay = state->watch_delay;
    }
    for (const v1::Job& job : script) {
      if (context->IsCancelled()) break;
      std::this_thread::sleep_for(delay);
      if (!writer->Write(job)) break;
      auto state = s_.Lock();
      state->jobs[job.id()] = job;  // GetJob after the watch sees the last snapshot
    }
    return grpc::Status::OK;
  }

  grpc::Status CancelJob(grpc::ServerContext*, const v1::CancelJobRequest* request,
                         v1::Job* response) override {
    auto state = s_.Lock();
    auto it = state->jobs.find(request->id());
    if (it == state->jobs.end()) {
      return grpc::Status(grpc::StatusCode::NOT_FOUND, "job " + request->id() + " not found");
    }
    if (it->second.state() == v1::QUEUED) it->second.set_state(v1::CANCELLED);
    it->second.set_cancel_requested(true);
    *response = it->second;
    return grpc::Status::OK;
  }

  grpc::Status ListDatasets(grpc::ServerContext*, const v1::ListDatasetsRequest*,
                            v1::ListDatasetsResponse* response) override {
    v1::Dataset* d = response->add_datasets();
    d->set_name("fashion-mnist");
    d->set_format("idx");
    d->set_origin("operator");
    d->set_channels(1);
    d->set_height(28);
    d->set_width(28);
    d->set_num_classes(10);
    d->set_train_images(-1);
    d->set_test_images(10000);
    for (const auto& [name, dataset] : s_.Lock()->datasets) *response->add_datasets() = dataset;
    return grpc::Status::OK;
  }

  // Registers any uploaded blob, as an archive of two classes; refuses the operator's name.
  grpc::Status CreateDataset(grpc::ServerContext*, const v1::CreateDatasetRequest* request,
                             v1::Dataset* response) override {
    auto state = s_.Lock();
    if (request->name() == "fashion-mnist") {
      return grpc::Status(grpc::StatusCode::ALREADY_EXISTS, "fashion-mnist is the operator's");
    }
    if (!state->blobs.contains(request->digest())) {
      return grpc::Status(grpc::StatusCode::NOT_FOUND, "blob not uploaded");
    }
    v1::Dataset& d = state->datasets[request->name()];
    d.set_name(request->name());
    d.set_format("archive");
    d.set_origin("uploaded");
    d.set_digest(request->digest());
    d.set_train_images(4);
    d.add_class_names("cat");
    d.add_class_names("dog");
    *response = d;
    return grpc::Status::OK;
  }

  grpc::Status ListModels(grpc::ServerContext*, const v1::ListModelsRequest*,
                          v1::ListModelsResponse* response) override {
    v1::Model* m = response->add_models();
    m->set_name("zoo:lenet5");
    m->set_description("LeNet-5");
    m->set_input_shape("1x28x28");
    return grpc::Status::OK;
  }

  grpc::Status GetCapabilities(grpc::ServerContext*, const v1::GetCapabilitiesRequest*,
                               v1::Capabilities* response) override {
    *response = job::Capabilities({"idx"});
    return grpc::Status::OK;
  }

 private:
  FakeQnetServer& s_;
};

class FakeQnetServer::Blobs final : public v1::BlobService::Service {
 public:
  explicit Blobs(FakeQnetServer& s) : s_(s) {}

  grpc::Status Upload(grpc::ServerContext*, grpc::ServerReader<v1::UploadRequest>* reader,
                      v1::UploadResponse* response) override {
    v1::UploadRequest request;
    if (!reader->Read(&request) || !request.has_header()) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "upload must start with a header");
    }
    const v1::UploadHeader header = request.header();
    std::string content;
    std::vector<size_t> chunks;
    while (reader->Read(&request)) {
      if (!request.has_chunk()) {
        return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "second header");
      }
      chunks.push_back(request.chunk().size());
      content += request.chunk();
    }
    const std::string digest = DigestOf(content);
    if (static_cast<int64_t>(content.size()) != header.size_bytes()) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "size does not match the header");
    }
    if (!header.digest().empty() && header.digest() != digest) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "digest does not match the header");
    }
    auto state = s_.Lock();
    ++state->upload_calls;
    state->upload_kinds.push_back(header.kind());
    state->upload_chunk_sizes.insert(state->upload_chunk_sizes.end(), chunks.begin(), chunks.end());
    state->blobs[digest] = content;
    response->set_digest(digest);
    response->set_size_bytes(static_cast<int64_t>(content.size()));
    return grpc::Status::OK;
  }

  grpc::Status Download(grpc::ServerContext*, const v1::DownloadRequest* request,
                        grpc::ServerWriter<v1::DownloadChunk>* writer) override {
    std::string content;
    size_t chunk_bytes;
    int64_t break_after;
    {
      auto state = s_.Lock();
      state->download_offsets.push_back(request->offset());
      auto it = state->blobs.find(request->digest());
      if (it == state->blobs.end()) {
        return grpc::Status(grpc::StatusCode::NOT_FOUND, "no blob " + request->digest());
      }
      content = it->second;
      auto lie = state->corrupt_downloads.find(request->digest());
      if (lie != state->corrupt_downloads.end()) content = lie->second;
      chunk_bytes = state->download_chunk_bytes;
      break_after = state->break_download_after;
      state->break_download_after = -1;
    }
    if (request->offset() < 0 || request->offset() > static_cast<int64_t>(content.size())) {
      return grpc::Status(grpc::StatusCode::OUT_OF_RANGE, "offset past the end");
    }
    int64_t sent = 0;
    for (size_t at = static_cast<size_t>(request->offset()); at < content.size();
         at += chunk_bytes) {
      if (break_after >= 0 && sent >= break_after) {
        return grpc::Status(grpc::StatusCode::UNAVAILABLE, "connection dropped (scripted)");
      }
      v1::DownloadChunk chunk;
      chunk.set_offset(static_cast<int64_t>(at));
      chunk.set_total_size(static_cast<int64_t>(content.size()));
      chunk.set_data(content.substr(at, chunk_bytes));
      sent += static_cast<int64_t>(chunk.data().size());
      if (!writer->Write(chunk)) break;
    }
    return grpc::Status::OK;
  }

  grpc::Status StatBlob(grpc::ServerContext*, const v1::StatBlobRequest* request,
                        v1::StatBlobResponse* response) override {
    auto state = s_.Lock();
    ++state->stat_calls;
    auto it = state->blobs.find(request->digest());
    if (it == state->blobs.end()) {
      return grpc::Status(grpc::StatusCode::NOT_FOUND, "no blob " + request->digest());
    }
    response->set_size_bytes(static_cast<int64_t>(it->second.size()));
    return grpc::Status::OK;
  }

 private:
  FakeQnetServer& s_;
};

class FakeQnetServer::Workers final : public v1::WorkerService::Service {
 public:
  explicit Workers(FakeQnetServer& s) : s_(s) {}

  grpc::Status AcquireLease(grpc::ServerContext* context, const v1::AcquireLeaseRequest* request,
                            v1::AcquireLeaseResponse* response) override {
    std::chrono::milliseconds wait;
    {
      auto state = s_.Lock();
      state->acquires.push_back(*request);
      state->worker_authorizations.push_back(Authorization(*context));
      if (!state->acquire_error.ok()) return state->acquire_error;
      wait = state->acquire_wait;
    }
    const auto until = std::chrono::steady_clock::now() + wait;
    while (!context->IsCancelled()) {
      {
        auto state = s_.Lock();
        if (!state->leases.empty()) {
          *response = state->leases.front();
          state->leases.pop_front();
          return grpc::Status::OK;
        }
      }
      if (std::chrono::steady_clock::now() >= until) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return grpc::Status::OK;
  }

  grpc::Status Heartbeat(grpc::ServerContext* context, const v1::HeartbeatRequest* request,
                         v1::HeartbeatResponse* response) override {
    auto state = s_.Lock();
    state->worker_authorizations.push_back(Authorization(*context));
    state->heartbeats.push_back(*request);
    if (state->lease_lost) {
      return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "lease expired");
    }
    response->set_cancel_requested(state->cancel_requested);
    return grpc::Status::OK;
  }

  grpc::Status CompleteLease(grpc::ServerContext* context, const v1::CompleteLeaseRequest* request,
                             v1::CompleteLeaseResponse*) override {
    auto state = s_.Lock();
    state->worker_authorizations.push_back(Authorization(*context));
    if (state->lease_lost) {
      return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "lease expired");
    }
    state->completes.push_back(*request);
    return grpc::Status::OK;
  }

  grpc::Status FailLease(grpc::ServerContext* context, const v1::FailLeaseRequest* request,
                         v1::FailLeaseResponse*) override {
    auto state = s_.Lock();
    state->worker_authorizations.push_back(Authorization(*context));
    if (state->lease_lost) {
      return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "lease expired");
    }
    state->fails.push_back(*request);
    return grpc::Status::OK;
  }

 private:
  FakeQnetServer& s_;
};

FakeQnetServer::FakeQnetServer()
    : jobs_(std::make_unique<Jobs>(*this)),
      blobs_(std::make_unique<Blobs>(*this)),
      workers_(std::make_unique<Workers>(*this)) {
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(jobs_.get());
  builder.RegisterService(blobs_.get());
  builder.RegisterService(workers_.get());
  server_ = builder.BuildAndStart();
  address_ = "127.0.0.1:" + std::to_string(port);
}

FakeQnetServer::~FakeQnetServer() {
  server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
}

std::string FakeQnetServer::PutBlob(const std::string& content) {
  const std::string digest = DigestOf(content);
  auto state = Lock();
  state->blobs[digest] = content;
  return digest;
}

bool FakeQnetServer::WaitFor(const std::function<bool(const FakeState&)>& done,
                             std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mutex_);
  return changed_.wait_for(lock, timeout, [&] { return done(state_); });
}

}  // namespace qnet::testing
