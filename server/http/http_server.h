// HttpServer: a small HTTP/1.1 server (Boost.Beast) on its own threads, for /metrics, /healthz,
// the REST endpoints and the dashboard. It does transport and protocol policy; every request
// that passes goes to one handler function (see web_api.h for the routes), with its header
// fields, client address and verified client certificate, so a handler can decide per endpoint
// (authentication: http_auth.h). With a certificate and key it speaks HTTPS only (TLS 1.2+);
// with a client CA too, it asks for a client certificate and refuses the handshake when one is
// presented that the CA did not sign (none at all is allowed: /healthz probes carry none, and
// every other endpoint wants an identity anyway).
//
// Policy (docs/ARCHITECTURE.md, "HTTP and resource limits"): GET and HEAD only (405 with Allow
// otherwise); request bodies are refused (400, as is any Transfer-Encoding); malformed requests
// (HTTP/2.0 framed as 1.1 too) get 400, a header block over 8 KiB 431; the Host header
// must name an allowed host or be an IP literal (421 otherwise: a page loaded from a rebound DNS
// name cannot read the API); connections are capped in total and per client address and time out; a
// failing accept() backs off instead of spinning. Every response carries X-Content-Type-Options:
// nosniff, a Content-Security-Policy
// (`default-src 'none'` unless the handler sets its own) and Cache-Control (no-store unless
// the handler sets one). A handler that throws gets a 500, never a dead thread.
//
//   auto http = HttpServer::Start("127.0.0.1:0", [](const HttpRequest& req) {
//     return HttpResponse{.status = 200, .body = "ok"};
//   });
//   std::cout << (*http)->address();  // "127.0.0.1:41237"
//   (*http)->Stop();                  // also done by the destructor
#ifndef QNET_SERVER_HTTP_HTTP_SERVER_H_
#define QNET_SERVER_HTTP_HTTP_SERVER_H_

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace qnet::server {

struct HttpRequest {
  std::string method;                        // "GET"
  std::string path;                          // "/api/v1/jobs" (decoded, no query)
  std::map<std::string, std::string> query;  // decoded ?k=v pairs
  // Every header field as received, names lower-case, in order.
  std::vector<std::pair<std::string, std::string>> headers;
  std::string client;  // the peer's IP address
  // The CN of the client certificate the --tls-client-ca verified; "" without one.
  std::string client_certificate_cn;

  // The first field named `name` (lower-case), or nullptr.
  const std::string* Header(absl::string_view name) const;
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // extra headers
};

using HttpHandler = std::function<HttpResponse(const HttpRequest&)>;

struct HttpServerOptions {
  int threads = 1;
  // Host names (case-insensitive, no port) the Host header may name besides IP literals;
  // "*" allows any. Empty: DefaultAllowedHosts(listen).
  std::vector<std::string> allowed_hosts;
  int max_connections = 256;            // open connections in total
  int max_connections_per_client = 32;  // from one IP address
  // To receive one whole request header, counted from the end of the previous response (so
  // it is also how long an idle keep-alive connection stays open).
  absl::Duration read_timeout = absl::Seconds(15);
  absl::Duration write_timeout = absl::Seconds(30);
  // HTTPS (PEM files): certificate chain and key; empty = plain HTTP. The client CA (optional)
  // verifies client certificates.
  std::string tls_cert_path;
  std::string tls_key_path;
  std::string tls_client_ca_path;
};

class HttpServer {
 public:
  // `listen` is "HOST:PORT" (port 0 picks a free one; "[::1]:0" for IPv6).
  static absl::StatusOr<std::unique_ptr<HttpServer>> Start(const std::string& listen,
                                                           HttpHandler handler,
                                                           HttpServerOptions options = {});
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // "HOST:PORT" with the port actually bound.
  std::string address() const;
  int port() const;
  // Closes the listener and every connection, joins the threads. Idempotent.
  void Stop();

  struct Impl;

 private:
  explicit HttpServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Splits "HOST:PORT" ("[v6]:PORT" keeps its brackets in `host`).
absl::StatusOr<std::pair<std::string, int>> SplitHostPort(const std::string& address);

// "localhost" and the host of `listen` when it is a name (IP literals are always allowed).
std::vector<std::string> DefaultAllowedHosts(const std::string& listen);

}  // namespace qnet::server

#endif  // QNET_SERVER_HTTP_HTTP_SERVER_H_
