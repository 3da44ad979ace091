// A gRPC server interceptor that records every call in the MetricsRegistry:
// qnet_grpc_requests_total{method,code} and qnet_grpc_request_duration_seconds{method}, for our
// services and for the health and reflection services alike.
//
//   std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> f;
//   f.push_back(std::make_unique<GrpcMetricsInterceptorFactory>(&metrics));
//   builder.experimental().SetInterceptorCreators(std::move(f));
#ifndef QNET_SERVER_METRICS_GRPC_METRICS_INTERCEPTOR_H_
#define QNET_SERVER_METRICS_GRPC_METRICS_INTERCEPTOR_H_

#include <grpcpp/support/server_interceptor.h>

#include "server/metrics/metrics_registry.h"

namespace qnet::server {

class GrpcMetricsInterceptorFactory final
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit GrpcMetricsInterceptorFactory(MetricsRegistry* metrics) : metrics_(metrics) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override;

 private:
  MetricsRegistry* const metrics_;
};

}  // namespace qnet::server

#endif  // QNET_SERVER_METRICS_GRPC_METRICS_INTERCEPTOR_H_
