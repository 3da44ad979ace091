// Fuzz target: the parts of a request qnetd parses itself (Boost.Beast parses the rest): the
// request target (path, query, percent escapes) and the Host header, plus the page token the
// REST API decodes from the query.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "absl/strings/string_view.h"
#include "server/http/request_target.h"
#include "server/scheduling/page_token.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace qnet::server;
  const absl::string_view input(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<RequestTarget> target = ParseRequestTarget(input);
  if (target.ok()) {
    // A parsed path is never longer than the target and holds no control characters.
    if (target->path.size() > size) std::abort();
    for (char c : target->path) {
      if (static_cast<unsigned char>(c) < 0x20) std::abort();
    }
    for (const auto& [key, value] : target->query) {
      DecodePageToken(value, qnet::v1::JOB_STATE_UNSPECIFIED).IgnoreError();
    }
  }
  absl::StatusOr<std::string> host = HostOfHostHeader(input);
  if (host.ok() && (host->empty() || host->size() > size)) std::abort();
  return 0;
}
