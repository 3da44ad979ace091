#include "client/connection.h"

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <utility>
#include <vector>

#include <grpcpp/security/credentials.h>
#include <grpcpp/support/client_interceptor.h>

#include "absl/strings/str_cat.h"
#include "common/token_file.h"

namespace qnet::client {
namespace {

std::string FromEnvironment(const char* name) {
  const char* value = std::getenv(name);
  return value != nullptr ? value : "";
}

// The flag's file, else the file the variable names; "" when neither is set.
absl::StatusOr<std::string> ReadPem(const std::string& flag_value, const char* variable,
                                    const char* flag) {
  const std::string path = flag_value.empty() ? FromEnvironment(variable) : flag_value;
  if (path.empty()) return std::string();
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  if (in) text << in.rdbuf();
  if (!in || text.str().empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot read ", path, " (", flag_value.empty() ? variable : flag, ")"));
  }
  return text.str();
}

// Adds the bearer token to every call's metadata.
class BearerInterceptor final : public grpc::experimental::Interceptor {
 public:
  explicit BearerInterceptor(const std::string* header) : header_(header) {}
  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            grpc::experimental::InterceptionHookPoints::PRE_SEND_INITIAL_METADATA)) {
      methods->GetSendInitialMetadata()->emplace("authorization", *header_);
    }
    methods->Proceed();
  }

 private:
  const std::string* const header_;
};

class BearerInterceptorFactory final
    : public grpc::experimental::ClientInterceptorFactoryInterface {
 public:
  explicit BearerInterceptorFactory(const std::string& token) : header_("Bearer " + token) {}
  grpc::experimental::Interceptor* CreateClientInterceptor(
      grpc::experimental::ClientRpcInfo*) override {
    return new BearerInterceptor(&header_);
  }

 private:
  const std::string header_;
};

}  // namespace

absl::StatusOr<ConnectionOptions> ResolveConnection(const std::string& address,
                                                    const ConnectionFlags& flags) {
  ConnectionOptions options;
  options.address = address;
  if (!flags.token_file.empty()) {
    absl::StatusOr<std::string> token = ReadTokenFile(flags.token_file);
    if (!token.ok()) return token.status();
    options.token = *std::move(token);
  } else if (const std::string env = FromEnvironment("QNET_TOKEN"); !env.empty()) {
    absl::StatusOr<std::string> token = CheckToken(env, "QNET_TOKEN");
    if (!token.ok()) return token.status();
    options.token = *std::move(token);
  }
  absl::StatusOr<std::string> ca = ReadPem(flags.ca_cert, "QNET_CA_CERT", "--ca-cert");
  if (!ca.ok()) return ca.status();
  absl::StatusOr<std::string> cert = ReadPem(flags.cert, "QNET_CERT", "--cert");
  if (!cert.ok()) return cert.status();
  absl::StatusOr<std::string> key = ReadPem(flags.key, "QNET_KEY", "--key");
  if (!key.ok()) return key.status();
  if (cert->empty() != key->empty()) {
    return absl::InvalidArgumentError("--cert and --key (QNET_CERT, QNET_KEY) go together");
  }
  options.ca_cert_pem = *std::move(ca);
  options.cert_pem = *std::move(cert);
  options.key_pem = *std::move(key);
  return options;
}

std::shared_ptr<grpc::Channel> MakeChannel(const ConnectionOptions& options) {
  std::shared_ptr<grpc::ChannelCredentials> credentials;
  if (options.ca_cert_pem.empty() && options.cert_pem.empty()) {
    credentials = grpc::InsecureChannelCredentials();
  } else {
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = options.ca_cert_pem;
    ssl.pem_private_key = options.key_pem;
    ssl.pem_cert_chain = options.cert_pem;
    credentials = grpc::SslCredentials(ssl);
  }
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(16 << 20);
  std::vector<std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface>> interceptors;
  if (!options.token.empty()) {
    interceptors.push_back(std::make_unique<BearerInterceptorFactory>(options.token));
  }
  return grpc::experimental::CreateCustomChannelWithInterceptors(options.address, credentials, args,
                                                                 std::move(interceptors));
}

}  // namespace qnet::client
