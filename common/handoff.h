// Handoff<T>: a value one thread hands to another once, typically a gRPC callback's status to
// the thread that started the call and waits for it (header only).
//
//   Handoff<grpc::Status> done;
//   stub.UnaryCall(&ctx, method, options, &request, &response,
//                  [&done](grpc::Status s) { done.Set(std::move(s)); });
//   const grpc::Status status = done.Wait();  // then ctx and response may go
//
// std::promise does the same, but a get() that has to block waits on a futex inside libstdc++.so,
// where ThreadSanitizer cannot see it, so what the callback's thread wrote into the call's context
// looks unordered with what the waiter does next. A mutex and a condition variable it sees.
#ifndef QNET_COMMON_HANDOFF_H_
#define QNET_COMMON_HANDOFF_H_

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <utility>

namespace qnet {

template <typename T>
class Handoff {
 public:
  // Once per Handoff.
  void Set(T value) {
    std::lock_guard<std::mutex> lock(mu_);
    value_ = std::move(value);
    ready_.notify_all();
  }

  // Blocks until Set, then returns the value (once).
  T Wait() {
    std::unique_lock<std::mutex> lock(mu_);
    ready_.wait(lock, [this] { return value_.has_value(); });
    return *std::move(value_);
  }

  // Whether Set has happened, waiting at most `timeout` for it (Wait then returns at once).
  bool ReadyWithin(std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lock(mu_);
    return ready_.wait_for(lock, timeout, [this] { return value_.has_value(); });
  }

 private:
  std::mutex mu_;
  std::condition_variable ready_;
  std::optional<T> value_;
};

}  // namespace qnet

#endif  // QNET_COMMON_HANDOFF_H_
