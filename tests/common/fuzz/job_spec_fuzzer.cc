// Fuzz target: the one JobSpec validator (common/job/job_spec.h) on any spec a client can send.
// The input is a JobSpec in protobuf text format, so the seeds read as jobs and mutations reach
// every field; the raw text also goes through the input-shape and request-id parsers. Besides
// never crashing, the rules must agree with each other: ValidateJobSpec accepts exactly the
// specs JobSpecProblems finds nothing in, a valid spec stays valid with its defaults resolved, and
// resolving defaults twice changes nothing.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "common/job/job_spec.h"
#include "google/protobuf/io/tokenizer.h"
#include "google/protobuf/text_format.h"

namespace {

// Most inputs are not valid text format; the parser would log each one.
class IgnoreErrors final : public google::protobuf::io::ErrorCollector {
 public:
  void AddError(int, google::protobuf::io::ColumnNumber, const std::string&) override {}
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace qnet::job;
  const std::string text(reinterpret_cast<const char*>(data), size);
  if (absl::StatusOr<InputShape> shape = ParseInputShape(text); shape.ok()) {
    if (ParseInputShape(FormatInputShape(*shape)).value_or(InputShape{}) != *shape) std::abort();
  }
  ValidateRequestId(text).IgnoreError();
  if (QuoteClientText(text).size() > 80 + 5) std::abort();  // clipped to 80, quotes and "..."

  qnet::v1::JobSpec spec;
  IgnoreErrors ignore_errors;
  google::protobuf::TextFormat::Parser parser;
  parser.RecordErrorsTo(&ignore_errors);
  parser.AllowPartialMessage(true);
  if (!parser.ParseFromString(text, &spec)) return 0;
  for (const bool allow_model_path : {false, true}) {
    const ValidateOptions options{.allow_model_path = allow_model_path};
    const bool valid = ValidateJobSpec(spec, options).ok();
    if (valid != JobSpecProblems(spec, options).empty()) std::abort();
    const qnet::v1::JobSpec effective = WithDefaults(spec);
    if (valid && !ValidateJobSpec(effective, options).ok()) std::abort();
    // Compared serialized (JobSpec has no maps, so that is deterministic): NaN equals itself.
    if (WithDefaults(effective).SerializeAsString() != effective.SerializeAsString()) std::abort();
  }
  return 0;
}
