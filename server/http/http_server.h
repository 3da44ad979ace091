// HttpServer: a small HTTP/1.1 server (Boost.Beast) on its own threads, for /metrics, /healthz,
// the REST endpoints and the dashboard. It only does transport: every request goes to one
// handler function (see web_api.h for the routes). GET and HEAD only; bodies are not read.
// A handler that throws gets a 500, never a dead thread.
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

namespace qnet::server {

struct HttpRequest {
  std::string method;                        // "GET"
  std::string path;                          // "/api/v1/jobs" (no query)
  std::map<std::string, std::string> query;  // decoded ?k=v pairs
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // extra headers
};

using HttpHandler = std::function<HttpResponse(const HttpRequest&)>;

class HttpServer {
 public:
  // `listen` is "HOST:PORT" (port 0 picks a free one; "[::1]:0" for IPv6).
  static absl::StatusOr<std::unique_ptr<HttpServer>> Start(const std::string& listen,
                                                           HttpHandler handler, int threads = 1);
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

}  // namespace qnet::server

#endif  // QNET_SERVER_HTTP_HTTP_SERVER_H_
