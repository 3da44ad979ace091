// An in-process fake of qnetd for client, CLI and worker tests: JobService, BlobService and
// WorkerService on 127.0.0.1:<free port>, backed by plain maps the test reads and scripts. It keeps
// only the behaviour the clients depend on (blob digests, offsets and chunking, paging, lease
// tokens), and records every request so tests can assert on them.
//
//   qnet::testing::FakeQnetServer server;
//   std::string digest = server.PutBlob("bytes");
//   auto client = qnet::client::QnetClient::Connect(server.address());
//   {
//     auto state = server.Lock();
//     state->list_page_size = 2;
//   }
#ifndef QNET_TESTS_CLIENT_FAKE_QNET_SERVER_H_
#define QNET_TESTS_CLIENT_FAKE_QNET_SERVER_H_

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "qnet/v1/blob.grpc.pb.h"
#include "qnet/v1/job.grpc.pb.h"
#include "qnet/v1/worker.grpc.pb.h"

namespace qnet::testing {

struct FakeState {
  // --- blobs ---
  std::map<std::string, std::string> blobs;  // digest -> content
  std::vector<std::string> upload_kinds;
  std::vector<size_t> upload_chunk_sizes;  // every chunk received
  int upload_calls = 0;
  int stat_calls = 0;
  std::vector<int64_t> download_offsets;  // offset of each Download call
  size_t download_chunk_bytes = 64 << 10;
  // A Download stream fails with UNAVAILABLE after sending this many bytes (once), -1: never.
  int64_t break_download_after = -1;
  // Downloads of this digest send this content instead (a lying server).
  std::map<std::string, std::string> corrupt_downloads;

  // --- datasets ---
  std::map<std::string, v1::Dataset> datasets;  // uploaded, by name (CreateDataset)

  // --- jobs ---
  std::map<std::string, v1::Job> jobs;  // id -> job
  std::vector<v1::SubmitJobRequest> submits;
  grpc::Status submit_error = grpc::Status::OK;
  int list_page_size = 2;  // forces paging
  int list_calls = 0;
  // WatchJob streams these snapshots (then ends); empty: the stored job, once.
  std::vector<v1::Job> watch_script;
  std::chrono::milliseconds watch_delay{0};
  int next_job = 1;

  // --- worker protocol ---
  std::deque<v1::AcquireLeaseResponse> leases;  // handed out in order
  std::vector<v1::AcquireLeaseRequest> acquires;
  std::vector<v1::HeartbeatRequest> heartbeats;
  std::vector<v1::CompleteLeaseRequest> completes;
  std::vector<v1::FailLeaseRequest> fails;
  bool cancel_requested = false;                  // Heartbeat answers cancel_requested
  bool lease_lost = false;                        // Heartbeat / Complete answer FAILED_PRECONDITION
  std::chrono::milliseconds acquire_wait{200};    // long-poll length when no lease is queued
  grpc::Status acquire_error = grpc::Status::OK;  // AcquireLease answers this when not OK
  // The "authorization" metadata of every worker call, in order ("" when absent).
  std::vector<std::string> worker_authorizations;
};

class FakeQnetServer {
 public:
  FakeQnetServer();
  ~FakeQnetServer();

  const std::string& address() const { return address_; }

  // Exclusive access to the state; notifies waiters when released.
  class Locked {
   public:
    Locked(FakeQnetServer& server) : server_(server), lock_(server.mutex_) {}
    ~Locked() {
      lock_.unlock();
      server_.changed_.notify_all();
    }
    FakeState* operator->() { return &server_.state_; }
    FakeState& operator*() { return server_.state_; }

   private:
    FakeQnetServer& server_;
    std::unique_lock<std::mutex> lock_;
  };
  Locked Lock() { return Locked(*this); }

  // Stores `content` as a blob and returns its digest.
  std::string PutBlob(const std::string& content);
  // Waits until `done(state)` holds; false after `timeout`.
  bool WaitFor(const std::function<bool(const FakeState&)>& done,
               std::chrono::milliseconds timeout = std::chrono::seconds(10));

 private:
  class Jobs;
  class Blobs;
  class Workers;

  std::mutex mutex_;
  std::condition_variable changed_;
  FakeState state_;
  std::unique_ptr<Jobs> jobs_;
  std::unique_ptr<Blobs> blobs_;
  std::unique_ptr<Workers> workers_;
  std::unique_ptr<grpc::Server> server_;
  std::string address_;
};

}  // namespace qnet::testing

#endif  // QNET_TESTS_CLIENT_FAKE_QNET_SERVER_H_
