// The method table lists every RPC of every service in proto/, and nothing else.
#include "server/auth/method_table.h"

#include <filesystem>
#include <set>

#include <google/protobuf/descriptor.h>

#include "gtest/gtest.h"
#include "qnet/v1/blob.pb.h"
#include "qnet/v1/job.pb.h"
#include "qnet/v1/worker.pb.h"

#ifndef QNET_PROTO_DIR
#error "QNET_PROTO_DIR must name the proto/ folder"
#endif

namespace qnet::server {
namespace {

std::set<std::string> ProtoMethods() {
  // The generated descriptors of every .proto file under proto/qnet/v1, so a new file counts too.
  std::set<std::string> methods;
  const std::filesystem::path root = QNET_PROTO_DIR;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(root)) {
    if (entry.path().extension() != ".proto") continue;
    const std::string name = std::filesystem::relative(entry.path(), root).string();
    const google::protobuf::FileDescriptor* file =
        google::protobuf::DescriptorPool::generated_pool()->FindFileByName(name);
    EXPECT_NE(file, nullptr) << name << " is not linked into this test; add its .pb.h above";
    if (file == nullptr) continue;
    for (int s = 0; s < file->service_count(); ++s) {
      const google::protobuf::ServiceDescriptor* service = file->service(s);
      for (int m = 0; m < service->method_count(); ++m) {
        methods.insert("/" + service->full_name() + "/" + service->method(m)->name());
      }
    }
  }
  return methods;
}

TEST(MethodTableTest, EveryProtoMethodIsListed) {
  const std::set<std::string> methods = ProtoMethods();
  ASSERT_GE(methods.size(), 17u);
  for (const std::string& m : methods) {
    EXPECT_TRUE(AllowedRoles(m).has_value()) << m << " is missing from server/auth/method_table.cc";
  }
  // Rows for our services name real methods; the rest are gRPC's health and reflection.
  for (const auto& [method, roles] : MethodTable()) {
    const std::string m(method);
    if (m.rfind("/qnet.", 0) == 0) {
      EXPECT_TRUE(methods.contains(m)) << m << " is not in proto/";
    }
  }
}

TEST(MethodTableTest, OnlyHealthChecksAreOpenAndMetricsHasNoRpc) {
  for (const auto& [method, roles] : MethodTable()) {
    const std::string m(method);
    EXPECT_EQ((roles & kAnyone) != 0, m.rfind("/grpc.health.v1.Health/", 0) == 0) << m;
    EXPECT_FALSE(RoleSetHas(roles, Role::kMetrics)) << m;
    if ((roles & kAnyone) == 0) {
      EXPECT_TRUE(RoleSetHas(roles, Role::kAdmin)) << m;
    }
  }
  EXPECT_FALSE(AllowedRoles("/qnet.v1.JobService/Nope").has_value());
}

}  // namespace
}  // namespace qnet::server
