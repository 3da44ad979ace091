// qnetd in-process over TLS, with certificates the openssl command line makes (make_certs.sh):
// a client certificate from the client CA names an identity of the tokens file (mTLS); one from
// another CA, an expired one, none at all, or one whose CN the file does not list is refused.
// Without a client CA, TLS carries bearer tokens and plaintext clients are refused. /healthz over
// HTTPS reports gRPC serving under TLS and mTLS (its probe needs no certificate).
#include <cstdio>
#include <cstdlib>

#include "client/connection.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "qnet/v1/job.grpc.pb.h"
#include "server/app/qnet_server_impl.h"
#include "server/auth/token_table.h"
#include "tests/server/test_util.h"

#ifndef QNET_MAKE_CERTS
#error "QNET_MAKE_CERTS must name make_certs.sh"
#endif

namespace qnet::server {
namespace {

class TlsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    pki_ = new testing::TempDir();
    ASSERT_EQ(std::system((std::string(QNET_MAKE_CERTS) + " " + pki_->path()).c_str()), 0);
  }
  static void TearDownTestSuite() { delete pki_; }

  void SetUp() override {
    testing::MakeFakeIdxDataset(dir_ / "fmnist");
    token_ = NewToken();
    testing::WriteFile(dir_ / "tokens", "alice client -\nbob client " + TokenHash(token_) + "\n");
  }

  void Start(bool client_ca, bool http = false) {
    QnetServerOptions options;
    options.listen = "127.0.0.1:0";
    options.http_listen = http ? "127.0.0.1:0" : "";
    options.data_dir = dir_ / "data";
    options.default_dataset_dir = dir_ / "fmnist";
    options.auth_tokens_path = dir_ / "tokens";
    options.tls_cert_path = *pki_ / "server.pem";
    options.tls_key_path = *pki_ / "server.key";
    if (client_ca) options.tls_client_ca_path = *pki_ / "ca.pem";
    absl::StatusOr<std::unique_ptr<QnetServerImpl>> server = QnetServerImpl::Start(options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
  }

  // ListJobs through a channel with this client's credentials.
  grpc::Status List(const std::string& cert, const std::string& token = "",
                    const std::string& ca = "ca") {
    client::ConnectionFlags flags;
    flags.ca_cert = ca.empty() ? "" : *pki_ / (ca + ".pem");
    if (!cert.empty()) {
      flags.cert = *pki_ / (cert + ".pem");
      flags.key = *pki_ / (cert + ".key");
    }
    absl::StatusOr<client::ConnectionOptions> connection =
        client::ResolveConnection(server_->grpc_address(), flags);
    EXPECT_TRUE(connection.ok()) << connection.status();
    connection->token = token;
    if (ca.empty() && cert.empty()) connection->ca_cert_pem.clear();  // plaintext
    auto stub = qnet::v1::JobService::NewStub(client::MakeChannel(*connection));
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    qnet::v1::ListJobsResponse response;
    return stub->ListJobs(&context, {}, &response);
  }

  // The HTTP status of GET `path` over HTTPS (curl, trusting the test CA); 0 when none came.
  int HttpsStatus(const std::string& path) {
    const std::string command = "curl -s -o /dev/null -w '%{http_code}' --cacert " +
                                (*pki_ / "ca.pem") + " https://" + server_->http_address() + path;
    FILE* curl = ::popen(command.c_str(), "r");
    if (curl == nullptr) return 0;
    int status = 0;
    if (std::fscanf(curl, "%d", &status) != 1) status = 0;
    ::pclose(curl);
    return status;
  }

  static testing::TempDir* pki_;
  testing::TempDir dir_;
  std::string token_;
  std::unique_ptr<QnetServerImpl> server_;
};

testing::TempDir* TlsTest::pki_ = nullptr;

TEST_F(TlsTest, ClientCertificatesNameIdentities) {
  Start(/*client_ca=*/true);
  EXPECT_TRUE(List("alice").ok()) << List("alice").error_message();
  // A token over mTLS names its own identity.
  EXPECT_TRUE(List("alice", token_).ok());
  const grpc::Status nobody = List("nobody");
  EXPECT_EQ(nobody.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(nobody.error_message(), ::testing::HasSubstr("CN nobody"));
  // The handshake itself fails for these: the call never reaches qnetd.
  EXPECT_EQ(List("").error_code(), grpc::StatusCode::UNAVAILABLE);         // no certificate
  EXPECT_EQ(List("rogue").error_code(), grpc::StatusCode::UNAVAILABLE);    // another CA
  EXPECT_EQ(List("expired").error_code(), grpc::StatusCode::UNAVAILABLE);  // expired
  EXPECT_EQ(List("alice", "", "rogue-ca").error_code(),                    // qnetd not trusted
            grpc::StatusCode::UNAVAILABLE);
}

TEST_F(TlsTest, TlsCarriesTokensAndRefusesPlaintext) {
  Start(/*client_ca=*/false);
  EXPECT_TRUE(List("", token_).ok());
  EXPECT_EQ(List("").error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(List("", token_, /*ca=*/"").error_code(), grpc::StatusCode::UNAVAILABLE);
}

TEST_F(TlsTest, HealthzSeesGrpcServingUnderTlsAndMutualTls) {
  for (const bool client_ca : {false, true}) {
    SCOPED_TRACE(client_ca ? "mTLS" : "TLS");
    Start(client_ca, /*http=*/true);
    EXPECT_EQ(HttpsStatus("/healthz"), 200);
    server_.reset();
  }
}

}  // namespace
}  // namespace qnet::server
