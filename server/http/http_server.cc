#include "server/http/http_server.h"

#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <algorithm>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <chrono>
#include <exception>
#include <mutex>
#include <optional>
#include <thread>
#include <type_traits>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "server/http/request_target.h"
#include "spdlog/spdlog.h"

namespace qnet::server {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

constexpr size_t kHeaderLimit = 8 * 1024;
constexpr auto kMinAcceptBackoff = std::chrono::milliseconds(10);
constexpr auto kMaxAcceptBackoff = std::chrono::seconds(1);
// Nothing on a plain-text, JSON or metrics answer may load or run anything.
constexpr absl::string_view kDefaultCsp =
    "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";
constexpr absl::string_view kText = "text/plain; charset=utf-8";

absl::string_view View(beast::string_view s) { return {s.data(), s.size()}; }

bool HasField(const HttpResponse& response, absl::string_view name) {
  return std::any_of(response.headers.begin(), response.headers.end(),
                     [&](const auto& kv) { return absl::EqualsIgnoreCase(kv.first, name); });
}

HttpResponse Error(int status, std::string body) {
  return {status, std::string(kText), std::move(body), {}};
}

// Open connections, in total and per client address.
class ConnectionLimits {
 public:
  ConnectionLimits(int total, int per_client) : total_(total), per_client_(per_client) {}

  bool TryAcquire(const std::string& client) {
    std::lock_guard<std::mutex> lock(mu_);
    int& mine = open_by_client_[client];
    if (open_ >= total_ || mine >= per_client_) {
      if (mine == 0) open_by_client_.erase(client);
      return false;
    }
    ++open_;
    ++mine;
    return true;
  }

  void Release(const std::string& client) {
    std::lock_guard<std::mutex> lock(mu_);
    --open_;
    if (--open_by_client_[client] == 0) open_by_client_.erase(client);
  }

 private:
  const int total_;
  const int per_client_;
  std::mutex mu_;
  int open_ = 0;
  absl::flat_hash_map<std::string, int> open_by_client_;
};

// One counted connection; released when the session that holds it ends.
class ConnectionSlot {
 public:
  ConnectionSlot(ConnectionLimits* limits, std::string client)
      : limits_(limits), client_(std::move(client)) {}
  ~ConnectionSlot() { limits_->Release(client_); }
  ConnectionSlot(const ConnectionSlot&) = delete;
  ConnectionSlot& operator=(const ConnectionSlot&) = delete;
  const std::string& client() const { return client_; }

 private:
  ConnectionLimits* const limits_;
  const std::string client_;
};

// What every session needs from the server; outlives the io_context that runs the sessions.
struct ServerPolicy {
  HttpHandler handler;
  HttpServerOptions options;
  bool any_host = false;
  absl::flat_hash_set<std::string> allowed_hosts;  // lower-case

  // The response when the request may not reach the handler, else nullopt.
  std::optional<HttpResponse> Refusal(const http::request<http::empty_body>& req) const {
    const size_t hosts = req.count(http::field::host);
    if (hosts > 1 || (hosts == 0 && req.version() >= 11)) {
      return Error(400, "an HTTP/1.1 request needs exactly one Host header\n");
    }
    if (hosts == 1 && !any_host) {
      absl::StatusOr<std::string> host = HostOfHostHeader(View(req[http::field::host]));
      if (!host.ok()) return Error(400, absl::StrCat(host.status().message(), "\n"));
      if (!IsIpLiteral(*host) && !allowed_hosts.contains(*host)) {
        return Error(421,
                     "this server does not answer to that host name (qnetd "
                     "--http-allowed-hosts)\n");
      }
    }
    if (req.count(http::field::transfer_encoding) > 0 ||
        (req.count(http::field::content_length) > 0 &&
         View(req[http::field::content_length]) != "0")) {
      return Error(400, "request bodies are not accepted\n");
    }
    if (req.method() != http::verb::get && req.method() != http::verb::head) {
      HttpResponse out = Error(405, "only GET and HEAD are supported\n");
      out.headers.emplace_back("Allow", "GET, HEAD");
      return out;
    }
    return std::nullopt;
  }

  HttpResponse Handle(const http::request<http::empty_body>& req, const std::string& client,
                      const std::string& client_certificate_cn) const {
    if (std::optional<HttpResponse> refusal = Refusal(req)) return *std::move(refusal);
    absl::StatusOr<RequestTarget> target = ParseRequestTarget(View(req.target()));
    if (!target.ok()) return Error(400, absl::StrCat(target.status().message(), "\n"));
    HttpRequest request;
    request.method = std::string(View(req.method_string()));
    request.path = std::move(target->path);
    request.query = std::move(target->query);
    request.client = client;
    request.client_certificate_cn = client_certificate_cn;
    for (const auto& field : req) {
      request.headers.emplace_back(absl::AsciiStrToLower(View(field.name_string())),
                                   std::string(View(field.value())));
    }
    try {
      return handler(request);
    } catch (const std::exception& e) {
      spdlog::error("http {}: {}", request.path, e.what());
      return Error(500, "internal error\n");
    }
  }
};

// The answer to a request Beast could not parse; nullopt when the peer just went away.
std::optional<HttpResponse> ParseErrorResponse(beast::error_code ec) {
  if (ec == http::error::header_limit) {
    return Error(431, "request header fields too large (at most 8 KiB)\n");
  }
  if (ec.category() == http::make_error_code(http::error::bad_method).category() &&
      ec != http::error::end_of_stream && ec != http::error::partial_message) {
    return Error(400, absl::StrCat("malformed request: ", ec.message(), "\n"));
  }
  return std::nullopt;
}

using PlainStream = beast::tcp_stream;
using TlsStream = beast::ssl_stream<beast::tcp_stream>;

// The CN of the peer's certificate when the handshake verified one; "" otherwise.
std::string VerifiedPeerCommonName(SSL* ssl) {
  X509* cert = SSL_get0_peer_certificate(ssl);
  if (cert == nullptr || SSL_get_verify_result(ssl) != X509_V_OK) return "";
  X509_NAME* subject = X509_get_subject_name(cert);
  const int at = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
  if (at < 0) return "";
  unsigned char* utf8 = nullptr;
  const int n =
      ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, at)));
  if (n < 0) return "";
  std::string cn(reinterpret_cast<char*>(utf8), static_cast<size_t>(n));
  OPENSSL_free(utf8);
  // A CN with a NUL could name someone else in a C string: it names nobody.
  return cn.find('\0') == std::string::npos ? cn : "";
}

// One connection, plain (PlainStream) or TLS (TlsStream): requests are read and answered in turn.
template <typename Stream>
class Session : public std::enable_shared_from_this<Session<Stream>> {
  static constexpr bool kTls = std::is_same_v<Stream, TlsStream>;

 public:
  Session(Stream stream, const ServerPolicy* policy, std::unique_ptr<ConnectionSlot> slot)
      : stream_(std::move(stream)), policy_(policy), slot_(std::move(slot)) {}

  void Start() {
    if constexpr (kTls) {
      // The handshake counts against the time to read a request header.
      beast::get_lowest_layer(stream_).expires_after(
          absl::ToChronoSeconds(policy_->options.read_timeout));
      stream_.async_handshake(asio::ssl::stream_base::server, [self = this->shared_from_this()](
                                                                  beast::error_code ec) {
        if (ec) {
          spdlog::debug("TLS handshake with {} failed: {}", self->slot_->client(), ec.message());
          self->CloseSocket();
          return;
        }
        self->client_certificate_cn_ = VerifiedPeerCommonName(self->stream_.native_handle());
        self->Read();
      });
    } else {
      Read();
    }
  }

 private:
  void Read() {
    parser_.emplace();
    parser_->header_limit(kHeaderLimit);
    beast::get_lowest_layer(stream_).expires_after(
        absl::ToChronoSeconds(policy_->options.read_timeout));
    http::async_read_header(
        stream_, buffer_, *parser_,
        [self = this->shared_from_this()](beast::error_code ec, size_t) { self->OnRead(ec); });
  }

  void OnRead(beast::error_code ec) {
    if (ec) {
      // A request cut short or timed out gets no answer; a malformed one its status, then the
      // connection closes (what follows in the stream cannot be trusted).
      if (std::optional<HttpResponse> error = ParseErrorResponse(ec)) {
        Write(*std::move(error), /*version=*/11, /*head=*/false, /*keep_alive=*/false);
      } else {
        Close();
      }
      return;
    }
    const http::request<http::empty_body>& req = parser_->get();
    HttpResponse out = policy_->Handle(req, slot_->client(), client_certificate_cn_);
    // After a refused body or a bad request the rest of the stream is not a request boundary.
    const bool keep_alive = req.keep_alive() && out.status != 400 && out.status != 431;
    Write(std::move(out), req.version(), req.method() == http::verb::head, keep_alive);
  }

  void Write(HttpResponse out, unsigned version, bool head, bool keep_alive) {
    auto res = std::make_shared<http::response<http::string_body>>(
        static_cast<http::status>(out.status), version);
    res->set(http::field::server, "qnetd");
    res->set(http::field::content_type, out.content_type);
    res->set("X-Content-Type-Options", "nosniff");
    res->set("Referrer-Policy", "no-referrer");
    if (!HasField(out, "Content-Security-Policy")) {
      res->set("Content-Security-Policy", std::string(kDefaultCsp));
    }
    if (!HasField(out, "Cache-Control")) res->set(http::field::cache_control, "no-store");
    if constexpr (kTls) {
      // Browsers keep to HTTPS for this host once they have seen it.
      res->set(http::field::strict_transport_security, "max-age=31536000");
    }
    for (const auto& [k, v] : out.headers) res->set(k, v);
    res->keep_alive(keep_alive);
    if (head) {
      res->content_length(out.body.size());
    } else {
      res->body() = std::move(out.body);
      res->prepare_payload();
    }
    beast::get_lowest_layer(stream_).expires_after(
        absl::ToChronoSeconds(policy_->options.write_timeout));
    http::async_write(stream_, *res,
                      [self = this->shared_from_this(), res](beast::error_code ec, size_t) {
                        if (ec || !res->keep_alive()) {
                          self->Close();
                        } else {
                          self->Read();
                        }
                      });
  }

  void Close() {
    if constexpr (kTls) {
      // close_notify first, so the peer can tell the end of the stream from a truncation.
      stream_.async_shutdown(
          [self = this->shared_from_this()](beast::error_code) { self->CloseSocket(); });
    } else {
      CloseSocket();
    }
  }

  void CloseSocket() {
    beast::error_code ec;
    beast::get_lowest_layer(stream_).socket().shutdown(tcp::socket::shutdown_send, ec);
    beast::get_lowest_layer(stream_).socket().close(ec);
  }

  Stream stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::empty_body>> parser_;
  const ServerPolicy* const policy_;
  const std::unique_ptr<ConnectionSlot> slot_;
  std::string client_certificate_cn_;
};

// The server's TLS context: TLS 1.2 or newer, the certificate chain and key, and client
// certificates verified by the client CA when one is given.
absl::StatusOr<std::unique_ptr<asio::ssl::context>> MakeTlsContext(
    const HttpServerOptions& options) {
  auto ctx = std::make_unique<asio::ssl::context>(asio::ssl::context::tls_server);
  beast::error_code ec;
  ctx->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                       asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 |
                       asio::ssl::context::no_tlsv1_1 | asio::ssl::context::single_dh_use,
                   ec);
  auto failed = [&](absl::string_view what, const std::string& path) {
    return absl::InvalidArgumentError(
        absl::StrCat("HTTPS: cannot use ", what, " ", path, ": ", ec.message()));
  };
  if (!ec) ctx->use_certificate_chain_file(options.tls_cert_path, ec);
  if (ec) return failed("the certificate chain", options.tls_cert_path);
  ctx->use_private_key_file(options.tls_key_path, asio::ssl::context::pem, ec);
  if (ec) return failed("the private key", options.tls_key_path);
  if (!options.tls_client_ca_path.empty()) {
    ctx->load_verify_file(options.tls_client_ca_path, ec);
    if (ec) return failed("the client CA", options.tls_client_ca_path);
    // Asked for, verified when presented, not required (see http_server.h).
    ctx->set_verify_mode(asio::ssl::verify_peer, ec);
    if (ec) return failed("the client CA", options.tls_client_ca_path);
  }
  return ctx;
}

}  // namespace

const std::string* HttpRequest::Header(absl::string_view name) const {
  for (const auto& [k, v] : headers) {
    if (k == name) return &v;
  }
  return nullptr;
}

struct HttpServer::Impl {
  // Declared before the io_context: sessions still queued in it refer to both.
  ServerPolicy policy;
  ConnectionLimits limits;
  std::unique_ptr<asio::ssl::context> tls;  // null: plain HTTP
  asio::io_context ioc;
  tcp::acceptor acceptor{ioc};
  asio::steady_timer accept_timer{ioc};
  std::chrono::milliseconds accept_backoff{0};  // only touched by the accept chain
  std::string host;
  int port = 0;
  std::vector<std::thread> threads;
  std::mutex stop_mu;
  bool stopped = false;

  Impl(ServerPolicy p)
      : policy(std::move(p)),
        limits(policy.options.max_connections, policy.options.max_connections_per_client) {}

  void Accept() {
    acceptor.async_accept(asio::make_strand(ioc), [this](beast::error_code ec, tcp::socket s) {
      if (ec == asio::error::operation_aborted || !acceptor.is_open()) return;
      if (ec) {
        BackOff(ec);
        return;
      }
      accept_backoff = std::chrono::milliseconds(0);
      StartSession(std::move(s));
      Accept();
    });
  }

  // accept() fails while the process is out of descriptors (EMFILE) and keeps failing until one
  // is freed; retrying at once would spin a core.
  void BackOff(beast::error_code ec) {
    if (accept_backoff.count() == 0) {
      spdlog::warn("HTTP accept failed: {}; retrying with backoff", ec.message());
    }
    accept_backoff = std::clamp(accept_backoff * 2, std::chrono::milliseconds(kMinAcceptBackoff),
                                std::chrono::milliseconds(kMaxAcceptBackoff));
    accept_timer.expires_after(accept_backoff);
    accept_timer.async_wait([this](beast::error_code wait_ec) {
      if (!wait_ec) Accept();
    });
  }

  void StartSession(tcp::socket socket) {
    beast::error_code ec;
    const tcp::endpoint peer = socket.remote_endpoint(ec);
    if (ec) return;  // already gone
    std::string client = peer.address().to_string();
    if (!limits.TryAcquire(client)) {
      spdlog::debug("HTTP connection from {} refused: connection limit", client);
      socket.close(ec);
      return;
    }
    // Every response is written whole. With Nagle's algorithm on, a response written right
    // behind the TLS 1.3 session tickets waited for the client's delayed ACK (about 40 ms), so
    // HTTPS without keep-alive managed ~150 requests/s (docs/BENCHMARKS.md).
    socket.set_option(tcp::no_delay(true), ec);
    auto slot = std::make_unique<ConnectionSlot>(&limits, std::move(client));
    if (tls != nullptr) {
      std::make_shared<Session<TlsStream>>(TlsStream(PlainStream(std::move(socket)), *tls), &policy,
                                           std::move(slot))
          ->Start();
    } else {
      std::make_shared<Session<PlainStream>>(PlainStream(std::move(socket)), &policy,
                                             std::move(slot))
          ->Start();
    }
  }

  void Run() {
    while (true) {
      try {
        ioc.run();
        return;
      } catch (const std::exception& e) {
        spdlog::error("http server: {}; continuing", e.what());
      }
    }
  }
};

absl::StatusOr<std::pair<std::string, int>> SplitHostPort(const std::string& address) {
  const size_t colon = address.rfind(':');
  int port = -1;
  if (colon == std::string::npos || colon == 0 ||
      !absl::SimpleAtoi(address.substr(colon + 1), &port) || port < 0 || port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("address \"", address, "\" is not HOST:PORT (e.g. 127.0.0.1:8080)"));
  }
  return std::make_pair(address.substr(0, colon), port);
}

std::vector<std::string> DefaultAllowedHosts(const std::string& listen) {
  std::vector<std::string> hosts = {"localhost"};
  absl::StatusOr<std::pair<std::string, int>> hp = SplitHostPort(listen);
  if (hp.ok() && !hp->first.empty() && !IsIpLiteral(hp->first)) {
    hosts.push_back(absl::AsciiStrToLower(hp->first));
  }
  return hosts;
}

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Start(const std::string& listen,
                                                              HttpHandler handler,
                                                              HttpServerOptions options) {
  absl::StatusOr<std::pair<std::string, int>> hp = SplitHostPort(listen);
  if (!hp.ok()) return hp.status();
  if (options.max_connections < 1 || options.max_connections_per_client < 1) {
    return absl::InvalidArgumentError("HTTP connection limits must be >= 1");
  }
  if (options.tls_cert_path.empty() != options.tls_key_path.empty()) {
    return absl::InvalidArgumentError("HTTPS needs both a certificate and a key");
  }
  std::unique_ptr<asio::ssl::context> tls;
  if (!options.tls_cert_path.empty()) {
    absl::StatusOr<std::unique_ptr<asio::ssl::context>> ctx = MakeTlsContext(options);
    if (!ctx.ok()) return ctx.status();
    tls = *std::move(ctx);
  }
  ServerPolicy policy;
  policy.handler = std::move(handler);
  if (options.allowed_hosts.empty()) options.allowed_hosts = DefaultAllowedHosts(listen);
  for (const std::string& h : options.allowed_hosts) {
    if (h == "*") policy.any_host = true;
    policy.allowed_hosts.insert(absl::AsciiStrToLower(h));
  }
  policy.options = std::move(options);
  auto impl = std::make_unique<Impl>(std::move(policy));
  impl->tls = std::move(tls);
  impl->host = hp->first;
  std::string host = hp->first;
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  beast::error_code ec;
  tcp::resolver resolver(impl->ioc);
  auto results = resolver.resolve(host, std::to_string(hp->second), ec);
  if (ec || results.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot resolve HTTP listen address ", listen, ": ", ec.message()));
  }
  const tcp::endpoint endpoint = results.begin()->endpoint();
  impl->acceptor.open(endpoint.protocol(), ec);
  if (!ec) impl->acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) impl->acceptor.bind(endpoint, ec);
  if (!ec) impl->acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen for HTTP on ", listen, ": ", ec.message()));
  }
  impl->port = impl->acceptor.local_endpoint().port();
  impl->Accept();
  for (int i = 0; i < std::max(1, impl->policy.options.threads); ++i) {
    impl->threads.emplace_back([p = impl.get()] { p->Run(); });
  }
  return std::unique_ptr<HttpServer>(new HttpServer(std::move(impl)));
}

HttpServer::HttpServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

HttpServer::~HttpServer() { Stop(); }

std::string HttpServer::address() const { return absl::StrCat(impl_->host, ":", impl_->port); }

int HttpServer::port() const { return impl_->port; }

void HttpServer::Stop() {
  std::lock_guard<std::mutex> lock(impl_->stop_mu);
  if (impl_->stopped) return;
  impl_->stopped = true;
  impl_->ioc.stop();
  for (std::thread& t : impl_->threads) t.join();
  // No thread runs the io_context any more: close the listener here, so new connections are
  // refused at once. Open sessions are released with the io_context.
  beast::error_code ec;
  impl_->acceptor.close(ec);
  impl_->threads.clear();
}

}  // namespace qnet::server
