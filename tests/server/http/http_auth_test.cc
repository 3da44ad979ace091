// Who may read what over HTTP (WebApi with a tokens file), over plain HTTP and HTTPS: no token
// gets 401 with WWW-Authenticate, a role the endpoint does not admit 403, a client only its own
// jobs (another's answers 404), an admin every job, the metrics role /metrics; /healthz and the
// static dashboard files need nothing. Over HTTPS with a client CA (certificates from the openssl
// command line, make_certs.sh) a verified client certificate names an identity and one from
// another CA is refused at the handshake.
#include <cstdlib>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include "absl/strings/ascii.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "server/auth/token_table.h"
#include "server/http/http_server.h"
#include "server/http/web_api.h"
#include "server/store/sqlite_job_store.h"
#include "tests/server/test_util.h"

#ifndef QNET_MAKE_CERTS
#error "QNET_MAKE_CERTS must name make_certs.sh"
#endif

namespace qnet::server {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;

using ::testing::HasSubstr;

struct Reply {
  int status = 0;  // 0: no answer (refused handshake, closed connection)
  std::string body;
  std::map<std::string, std::string> headers;  // names lower-case
};

std::string Request(const std::string& path, const std::string& token) {
  std::string request = "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n";
  if (!token.empty()) request += "Authorization: Bearer " + token + "\r\n";
  return request + "\r\n";
}

Reply Plain(const std::string& addr, const std::string& path, const std::string& token) {
  testing::HttpResult r = testing::HttpExchange(addr, Request(path, token));
  return {r.status, r.body, r.headers};
}

// One GET over TLS, trusting `ca`, with a client certificate when `cert` names one.
Reply Tls(const std::string& addr, const std::string& path, const std::string& token,
          const std::string& ca, const std::string& cert = "", const std::string& key = "") {
  asio::io_context ioc;
  asio::ssl::context ctx(asio::ssl::context::tls_client);
  ctx.load_verify_file(ca);
  ctx.set_verify_mode(asio::ssl::verify_peer);
  if (!cert.empty()) {
    ctx.use_certificate_chain_file(cert);
    ctx.use_private_key_file(key, asio::ssl::context::pem);
  }
  beast::ssl_stream<beast::tcp_stream> stream(ioc, ctx);
  absl::StatusOr<std::pair<std::string, int>> hp = SplitHostPort(addr);
  beast::error_code ec;
  beast::get_lowest_layer(stream).connect(
      asio::ip::tcp::endpoint(asio::ip::make_address(hp->first), hp->second), ec);
  beast::get_lowest_layer(stream).expires_after(std::chrono::seconds(10));
  if (!ec) stream.handshake(asio::ssl::stream_base::client, ec);
  beast::http::request<beast::http::empty_body> req(beast::http::verb::get, path, 11);
  req.set(beast::http::field::host, "127.0.0.1");
  if (!token.empty()) req.set(beast::http::field::authorization, "Bearer " + token);
  if (!ec) beast::http::write(stream, req, ec);
  beast::flat_buffer buffer;
  beast::http::response<beast::http::string_body> res;
  if (!ec) beast::http::read(stream, buffer, res, ec);
  if (ec) return {};
  Reply out{static_cast<int>(res.result_int()), res.body(), {}};
  for (const auto& field : res) {
    out.headers[absl::AsciiStrToLower(std::string(field.name_string()))] =
        std::string(field.value());
  }
  return out;
}

class HttpAuthTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    pki_ = new testing::TempDir();
    ASSERT_EQ(std::system((std::string(QNET_MAKE_CERTS) + " " + pki_->path()).c_str()), 0);
  }
  static void TearDownTestSuite() { delete pki_; }

  void SetUp() override {
    std::string lines;
    for (const auto& [name, role] : std::vector<std::pair<std::string, Role>>{
             {"bob", Role::kClient}, {"ops", Role::kAdmin}, {"prom", Role::kMetrics}}) {
      tokens_[name] = NewToken();
      lines += name + " " + std::string(RoleName(role)) + " " + TokenHash(tokens_[name]) + "\n";
    }
    lines += "alice client -\n";  // client certificate only
    testing::WriteFile(dir_ / "tokens", lines);
    auto auth = Authenticator::FromFile(dir_ / "tokens");
    ASSERT_TRUE(auth.ok()) << auth.status();
    auth_ = *std::move(auth);
    auto store = SqliteJobStore::Open(dir_ / "jobs.db");
    ASSERT_TRUE(store.ok());
    store_ = *std::move(store);
    scheduler_ = std::make_unique<Scheduler>(store_.get(), &clock_, SchedulerOptions{}, &metrics_);
    ASSERT_TRUE(scheduler_->Recover().ok());
    alice_job_ = Submit("alice");
    bob_job_ = Submit("bob");
  }

  void Start(const Authenticator* auth, HttpServerOptions options = {}) {
    api_ = std::make_unique<WebApi>(
        scheduler_.get(), &metrics_, auth, [] { return absl::OkStatus(); },
        "/usr/share/javascript/chart.js/chart.min.js", "9.9.9");
    auto http = HttpServer::Start(
        "127.0.0.1:0", [this](const HttpRequest& r) { return api_->Handle(r); }, options);
    ASSERT_TRUE(http.ok()) << http.status();
    http_ = *std::move(http);
  }

  HttpServerOptions Https(bool client_ca) const {
    HttpServerOptions options;
    options.tls_cert_path = *pki_ / "server.pem";
    options.tls_key_path = *pki_ / "server.key";
    if (client_ca) options.tls_client_ca_path = *pki_ / "ca.pem";
    return options;
  }

  std::string Submit(const std::string& owner) {
    qnet::v1::JobSpec spec;
    spec.set_model("zoo:lenet5");
    spec.set_dataset("fashion-mnist");
    spec.set_weight_bits(2);
    auto job = scheduler_->Submit(spec, "", owner);
    EXPECT_TRUE(job.ok());
    return job->id();
  }

  // The ids /api/v1/jobs lists for `token`.
  std::vector<std::string> Listed(const std::string& token) {
    Reply r = Plain(http_->address(), "/api/v1/jobs", token);
    EXPECT_EQ(r.status, 200) << r.body;
    std::vector<std::string> ids;
    const nlohmann::json list = nlohmann::json::parse(r.body);
    for (const auto& job : list["jobs"]) ids.push_back(job["id"]);
    return ids;
  }

  static testing::TempDir* pki_;
  testing::TempDir dir_;
  std::map<std::string, std::string> tokens_;
  std::unique_ptr<Authenticator> auth_;
  testing::FakeClock clock_;
  MetricsRegistry metrics_{"9.9.9"};
  std::unique_ptr<SqliteJobStore> store_;
  std::unique_ptr<Scheduler> scheduler_;
  std::string alice_job_, bob_job_;
  std::unique_ptr<WebApi> api_;
  std::unique_ptr<HttpServer> http_;
};

testing::TempDir* HttpAuthTest::pki_ = nullptr;

TEST_F(HttpAuthTest, WithoutAnIdentityEveryEndpointButHealthzAndStaticFilesIs401) {
  Start(auth_.get());
  for (const std::string& path : std::vector<std::string>{
           "/metrics", "/api/v1/jobs", "/api/v1/jobs/" + bob_job_, "/api/v1/summary"}) {
    for (const std::string token : {"", "qnet_not-a-known-token"}) {
      Reply r = Plain(http_->address(), path, token);
      EXPECT_EQ(r.status, 401) << path << " " << r.body;
      EXPECT_EQ(r.headers["www-authenticate"], "Bearer realm=\"qnetd\"") << path;
      EXPECT_THAT(r.body, ::testing::Not(HasSubstr(bob_job_)));
      if (!token.empty()) {
        EXPECT_THAT(r.body, ::testing::Not(HasSubstr(token)));
      }
    }
  }
  EXPECT_EQ(Plain(http_->address(), "/healthz", "").status, 200);
  Reply page = Plain(http_->address(), "/", "");
  EXPECT_EQ(page.status, 200);
  EXPECT_THAT(page.headers["content-security-policy"], HasSubstr("default-src 'none'"));
}

TEST_F(HttpAuthTest, AWrongRoleIs403) {
  Start(auth_.get());
  Reply client_scrape = Plain(http_->address(), "/metrics", tokens_["bob"]);
  EXPECT_EQ(client_scrape.status, 403);
  EXPECT_THAT(client_scrape.body, HasSubstr("bob (role client) may not scrape /metrics"));
  EXPECT_EQ(Plain(http_->address(), "/api/v1/jobs", tokens_["prom"]).status, 403);
  EXPECT_EQ(Plain(http_->address(), "/api/v1/jobs/" + bob_job_, tokens_["prom"]).status, 403);

  Reply scrape = Plain(http_->address(), "/metrics", tokens_["prom"]);
  EXPECT_EQ(scrape.status, 200);
  EXPECT_THAT(scrape.body, HasSubstr("qnet_jobs_submitted_total"));
  EXPECT_EQ(Plain(http_->address(), "/metrics", tokens_["ops"]).status, 200);
  EXPECT_EQ(Plain(http_->address(), "/api/v1/summary", tokens_["prom"]).status, 200);
}

TEST_F(HttpAuthTest, ClientsSeeTheirOwnJobsAndAdminsEveryJob) {
  Start(auth_.get());
  EXPECT_THAT(Listed(tokens_["bob"]), ::testing::ElementsAre(bob_job_));
  EXPECT_THAT(Listed(tokens_["ops"]), ::testing::UnorderedElementsAre(alice_job_, bob_job_));
  EXPECT_EQ(Plain(http_->address(), "/api/v1/jobs/" + bob_job_, tokens_["bob"]).status, 200);
  Reply other = Plain(http_->address(), "/api/v1/jobs/" + alice_job_, tokens_["bob"]);
  Reply missing = Plain(http_->address(), "/api/v1/jobs/no-such-job", tokens_["bob"]);
  EXPECT_EQ(other.status, 404);
  EXPECT_EQ(missing.status, 404);
  // Another's job answers exactly as a missing one would, but for the id.
  EXPECT_EQ(other.body.replace(other.body.find(alice_job_), alice_job_.size(), "no-such-job"),
            missing.body);
  EXPECT_EQ(Plain(http_->address(), "/api/v1/jobs/" + alice_job_, tokens_["ops"]).status, 200);
}

TEST_F(HttpAuthTest, OpenModeNeedsNothing) {
  std::unique_ptr<Authenticator> open = Authenticator::Open();
  Start(open.get());
  EXPECT_EQ(Plain(http_->address(), "/metrics", "").status, 200);
  EXPECT_EQ(Plain(http_->address(), "/api/v1/jobs/" + alice_job_, "").status, 200);
  EXPECT_EQ(Listed("").size(), 2u);
}

TEST_F(HttpAuthTest, HttpsCarriesTokensAndRefusesPlainHttp) {
  Start(auth_.get(), Https(/*client_ca=*/false));
  const std::string ca = *pki_ / "ca.pem";
  Reply r = Tls(http_->address(), "/api/v1/jobs/" + bob_job_, tokens_["bob"], ca);
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_THAT(r.headers["strict-transport-security"], HasSubstr("max-age="));
  EXPECT_EQ(Tls(http_->address(), "/api/v1/jobs", "", ca).status, 401);
  EXPECT_EQ(Tls(http_->address(), "/healthz", "", ca).status, 200);
  // A plain-text request gets no HTTP answer from the TLS port.
  EXPECT_EQ(Plain(http_->address(), "/healthz", "").status, 0);
  // A client that trusts another CA does not accept the server.
  EXPECT_EQ(Tls(http_->address(), "/healthz", "", *pki_ / "rogue-ca.pem").status, 0);
}

TEST_F(HttpAuthTest, ClientCertificatesNameIdentitiesUnderMutualTls) {
  Start(auth_.get(), Https(/*client_ca=*/true));
  const std::string ca = *pki_ / "ca.pem";
  auto as = [&](const std::string& name, const std::string& path, const std::string& token = "") {
    return Tls(http_->address(), path, token, ca, *pki_ / (name + ".pem"), *pki_ / (name + ".key"));
  };
  // alice has no token: her certificate is her identity.
  EXPECT_EQ(as("alice", "/api/v1/jobs/" + alice_job_).status, 200);
  EXPECT_EQ(as("alice", "/api/v1/jobs/" + bob_job_).status, 404);
  EXPECT_EQ(as("alice", "/metrics").status, 403);
  // A token wins over the certificate (as for gRPC).
  EXPECT_EQ(as("alice", "/api/v1/jobs/" + bob_job_, tokens_["bob"]).status, 200);
  // A CN the tokens file does not list is no identity.
  EXPECT_EQ(as("nobody", "/api/v1/jobs").status, 403);
  // Certificates the CA did not sign, or expired ones, end the handshake.
  EXPECT_EQ(as("rogue", "/healthz").status, 0);
  EXPECT_EQ(as("expired", "/healthz").status, 0);
  // Without a certificate: probes still work, everything else wants a token.
  EXPECT_EQ(Tls(http_->address(), "/healthz", "", ca).status, 200);
  EXPECT_EQ(Tls(http_->address(), "/api/v1/jobs", "", ca).status, 401);
  EXPECT_EQ(Tls(http_->address(), "/api/v1/jobs", tokens_["bob"], ca).status, 200);
}

TEST_F(HttpAuthTest, StartFailsOnAMissingCertificate) {
  HttpServerOptions options = Https(false);
  options.tls_cert_path = dir_ / "missing.pem";
  auto http = HttpServer::Start(
      "127.0.0.1:0", [](const HttpRequest&) { return HttpResponse{}; }, options);
  ASSERT_FALSE(http.ok());
  EXPECT_THAT(http.status().message(), HasSubstr("missing.pem"));
}

}  // namespace
}  // namespace qnet::server
