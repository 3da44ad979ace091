#include "server/metrics/grpc_metrics_interceptor.h"

#include <chrono>

namespace qnet::server {
namespace {

using grpc::experimental::InterceptionHookPoints;

class GrpcMetricsInterceptor final : public grpc::experimental::Interceptor {
 public:
  GrpcMetricsInterceptor(grpc::experimental::ServerRpcInfo* info, MetricsRegistry* metrics)
      : method_(info->method() != nullptr ? info->method() : "unknown"),
        metrics_(metrics),
        start_(std::chrono::steady_clock::now()) {}

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_STATUS)) {
      const grpc::Status status = methods->GetSendStatus();
      metrics_->GrpcRequest(method_, static_cast<int>(status.error_code()),
                            absl::FromChrono(std::chrono::steady_clock::now() - start_));
    }
    methods->Proceed();
  }

 private:
  const char* method_;
  MetricsRegistry* const metrics_;
  const std::chrono::steady_clock::time_point start_;
};

}  // namespace

grpc::experimental::Interceptor* GrpcMetricsInterceptorFactory::CreateServerInterceptor(
    grpc::experimental::ServerRpcInfo* info) {
  return new GrpcMetricsInterceptor(info, metrics_);
}

}  // namespace qnet::server
