#include "server/auth/audit_log.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/message.h"
#include "nlohmann/json.hpp"
#include "prometheus/counter.h"
#include "server/auth/grpc_auth.h"
#include "spdlog/spdlog.h"

namespace qnet::server {
namespace {

using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using grpc::experimental::InterceptionHookPoints;

const FieldDescriptor* Field(const Message& m, absl::string_view name, FieldDescriptor::Type type) {
  const FieldDescriptor* f = m.GetDescriptor()->FindFieldByName(std::string(name));
  return f != nullptr && !f->is_repeated() && f->type() == type ? f : nullptr;
}

std::string StringField(const Message& m, absl::string_view name) {
  const FieldDescriptor* f = Field(m, name, FieldDescriptor::TYPE_STRING);
  return f != nullptr ? m.GetReflection()->GetString(m, f) : std::string();
}

// The job a request or response names: a `job_id` field, the `id` of a Job or of a request about
// one job (CancelJobRequest), or that of a nested `job` (AcquireLeaseResponse) or `header`
// (an upload's first message).
std::string JobIdOf(const Message& m) {
  if (std::string id = StringField(m, "job_id"); !id.empty()) return id;
  const std::string& type = m.GetDescriptor()->name();
  if (type == "Job" || absl::EndsWith(type, "JobRequest")) return StringField(m, "id");
  for (absl::string_view nested : {"job", "header"}) {
    const FieldDescriptor* f = Field(m, nested, FieldDescriptor::TYPE_MESSAGE);
    if (f != nullptr && m.GetReflection()->HasField(m, f)) {
      return JobIdOf(m.GetReflection()->GetMessage(m, f));
    }
  }
  return "";
}

class GrpcAuditInterceptor final : public grpc::experimental::Interceptor {
 public:
  GrpcAuditInterceptor(grpc::experimental::ServerRpcInfo* info, AuditWhen when, AuditLog* log,
                       const Authenticator* auth)
      : info_(info), when_(when), log_(log), auth_(auth) {}

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    // Every request type of an audited method is a generated protobuf message.
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::POST_RECV_MESSAGE) &&
        !seen_request_) {
      seen_request_ = true;
      if (const void* request = methods->GetRecvMessage(); request != nullptr) {
        const Message& m = *static_cast<const Message*>(request);
        job_id_ = JobIdOf(m);
        checkpoint_ = StringField(m, "checkpoint_digest");
      }
    }
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_MESSAGE) &&
        job_id_.empty()) {
      if (const void* response = methods->GetSendMessage(); response != nullptr) {
        job_id_ = JobIdOf(*static_cast<const Message*>(response));
      }
    }
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_STATUS)) {
      Record(methods->GetSendStatus());
    }
    methods->Proceed();
  }

 private:
  void Record(const grpc::Status& status) {
    switch (when_) {
      case AuditWhen::kNever:
        return;
      case AuditWhen::kAlways:
        break;
      case AuditWhen::kWhenJob:
        if (job_id_.empty()) return;
        break;
      case AuditWhen::kNewCheckpoint:
        if (!status.ok() || checkpoint_.empty() || !log_->NewCheckpoint(job_id_, checkpoint_)) {
          return;
        }
        break;
    }
    AuditEntry entry;
    entry.time = absl::Now();
    const grpc::ServerContextBase* context = info_->server_context();
    absl::StatusOr<Identity> who =
        IdentityOf(*auth_, context->client_metadata(), context->auth_context().get());
    if (who.ok()) entry.who = *std::move(who);
    entry.method = info_->method();
    entry.job_id = job_id_;
    entry.outcome =
        absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
    log_->Write(entry);
    // A lease that ended reports no more checkpoints.
    if (absl::EndsWith(entry.method, "CompleteLease") ||
        absl::EndsWith(entry.method, "FailLease")) {
      log_->ForgetJob(job_id_);
    }
  }

  grpc::experimental::ServerRpcInfo* const info_;
  const AuditWhen when_;
  AuditLog* const log_;
  const Authenticator* const auth_;
  bool seen_request_ = false;
  std::string job_id_;
  std::string checkpoint_;
};

}  // namespace

const std::vector<std::pair<absl::string_view, AuditWhen>>& AuditTable() {
  using enum AuditWhen;
  static const auto* const table = new std::vector<std::pair<absl::string_view, AuditWhen>>{
      {"/qnet.v1.JobService/SubmitJob", kAlways},
      {"/qnet.v1.JobService/GetJob", kNever},
      {"/qnet.v1.JobService/ListJobs", kNever},
      {"/qnet.v1.JobService/WatchJob", kNever},
      {"/qnet.v1.JobService/CancelJob", kAlways},
      {"/qnet.v1.JobService/DeleteJob", kAlways},
      {"/qnet.v1.JobService/ListDatasets", kNever},
      {"/qnet.v1.JobService/CreateDataset", kAlways},
      {"/qnet.v1.JobService/ListModels", kNever},
      {"/qnet.v1.JobService/GetCapabilities", kNever},
      {"/qnet.v1.BlobService/Upload", kAlways},
      {"/qnet.v1.BlobService/Download", kNever},
      {"/qnet.v1.BlobService/StatBlob", kNever},
      {"/qnet.v1.BlobService/GetUploadOffset", kNever},
      {"/qnet.v1.WorkerService/AcquireLease", kWhenJob},
      {"/qnet.v1.WorkerService/Heartbeat", kNewCheckpoint},
      {"/qnet.v1.WorkerService/CompleteLease", kAlways},
      {"/qnet.v1.WorkerService/FailLease", kAlways},
      {"/grpc.health.v1.Health/Check", kNever},
      {"/grpc.health.v1.Health/Watch", kNever},
      {"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", kNever},
  };
  return *table;
}

AuditWhen AuditWhenOf(absl::string_view method) {
  for (const auto& [name, when] : AuditTable()) {
    if (name == method) return when;
  }
  return AuditWhen::kNever;
}

std::string AuditLine(const AuditEntry& entry) {
  nlohmann::json line = {
      {"time", absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", entry.time, absl::UTCTimeZone())},
      {"identity", entry.who.has_value() ? nlohmann::json(entry.who->name) : nlohmann::json()},
      {"role", entry.who.has_value() ? nlohmann::json(std::string(RoleName(entry.who->role)))
                                     : nlohmann::json()},
      {"method", entry.method},
      {"job_id", entry.job_id.empty() ? nlohmann::json() : nlohmann::json(entry.job_id)},
      {"code", absl::StatusCodeToString(entry.outcome.code())},
      {"message", std::string(entry.outcome.message())},
  };
  if (entry.repeats > 0) line["repeats"] = entry.repeats;
  // Invalid UTF-8 (a client's job id) is replaced, never a reason to lose the line.
  return line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

absl::StatusOr<std::unique_ptr<AuditLog>> AuditLog::Open(const std::string& path,
                                                         MetricsRegistry* metrics) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--audit-log: cannot open ", path, " for appending: ", std::strerror(errno)));
  }
  prometheus::Counter* failures = nullptr;
  prometheus::Counter* refusals = nullptr;
  if (metrics != nullptr) {
    failures = &prometheus::BuildCounter()
                    .Name("qnet_audit_write_failures_total")
                    .Help("Audit log lines that could not be written (--audit-log)")
                    .Register(metrics->registry())
                    .Add({});
    refusals = &prometheus::BuildCounter()
                    .Name("qnet_audit_refusals_total")
                    .Help(
                        "gRPC calls refused before any handler (no identity, wrong role), "
                        "each logged or counted in a summary line (--audit-log)")
                    .Register(metrics->registry())
                    .Add({});
  }
  return std::unique_ptr<AuditLog>(new AuditLog(fd, path, failures, refusals));
}

AuditLog::AuditLog(int fd, std::string path, prometheus::Counter* failures,
                   prometheus::Counter* refusals)
    : fd_(fd),
      path_(std::move(path)),
      failures_counter_(failures),
      refusals_counter_(refusals),
      flusher_([this] { FlushRefusalsPeriodically(); }) {}

AuditLog::~AuditLog() {
  {
    absl::MutexLock lock(&refusals_mu_);
    stopping_ = true;
  }
  flusher_.join();
  {
    absl::MutexLock lock(&refusals_mu_);
    EndRefusalWindowLocked(absl::Now(), /*even_if_open=*/true);  // nothing counted is lost
  }
  ::close(fd_);
}

bool AuditLog::Refused(const AuditEntry& entry) {
  if (refusals_counter_ != nullptr) refusals_counter_->Increment();
  const std::string code = absl::StatusCodeToString(entry.outcome.code());
  absl::MutexLock lock(&refusals_mu_);
  EndRefusalWindowLocked(entry.time);
  if (refusals_.empty()) refusal_window_start_ = entry.time;
  std::string key =
      absl::StrCat(code, " ", entry.who.has_value() ? entry.who->name : "", " ", entry.method);
  AuditEntry summary = entry;
  if (!refusals_.contains(key) && refusals_.size() >= kRefusalKeysPerWindow) {
    // Too many different callers or methods this minute: one count per code for the rest.
    key = absl::StrCat(code, " *");
    summary = AuditEntry{entry.time, std::nullopt, "*", "", entry.outcome};
  }
  const auto [it, first] = refusals_.try_emplace(key, RefusalSummary{std::move(summary)});
  if (!first) {
    ++it->second.repeats;
    return false;
  }
  Write(entry);
  return true;
}

void AuditLog::FlushRefusals(absl::Time now) {
  absl::MutexLock lock(&refusals_mu_);
  EndRefusalWindowLocked(now);
}

void AuditLog::EndRefusalWindowLocked(absl::Time now, bool even_if_open) {
  if (refusals_.empty() || (now < refusal_window_start_ + kRefusalWindow && !even_if_open)) {
    return;
  }
  const std::string since =
      absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", refusal_window_start_, absl::UTCTimeZone());
  for (auto& [key, summary] : refusals_) {
    if (summary.repeats == 0) continue;
    AuditEntry entry = std::move(summary.first);
    entry.time = now;
    entry.job_id.clear();
    entry.repeats = summary.repeats;
    std::string message =
        absl::StrCat(summary.repeats, " more call(s) refused like this since ", since);
    if (entry.method == "*") {
      absl::StrAppend(&message, ", from callers or methods beyond the first ",
                      kRefusalKeysPerWindow, " of the window");
    }
    entry.outcome = absl::Status(entry.outcome.code(), message);
    Write(entry);
  }
  refusals_.clear();
}

void AuditLog::FlushRefusalsPeriodically() {
  absl::MutexLock lock(&refusals_mu_);
  // Checking four times per window writes a summary within 1.25 windows of its first refusal.
  while (!refusals_mu_.AwaitWithTimeout(absl::Condition(&stopping_), kRefusalWindow / 4)) {
    EndRefusalWindowLocked(absl::Now());
  }
}

void AuditLog::Write(const AuditEntry& entry) {
  const std::string line = AuditLine(entry);
  ssize_t n = 0;
  do {
    n = ::write(fd_, line.data(), line.size());
  } while (n < 0 && errno == EINTR);
  if (n == static_cast<ssize_t>(line.size())) return;
  const std::string why = n < 0 ? std::strerror(errno) : "short write";
  const int64_t failures = ++write_failures_;
  if (failures_counter_ != nullptr) failures_counter_->Increment();
  // The first failure and then every thousandth: a full disk must not flood the log as well.
  if (failures == 1 || failures % 1000 == 0) {
    spdlog::error("audit log {}: cannot write a line ({}); {} line(s) lost so far", path_, why,
                  failures);
  }
}

bool AuditLog::NewCheckpoint(const std::string& job_id, const std::string& checkpoint) {
  absl::MutexLock lock(&mu_);
  std::string& last = checkpoints_[job_id];
  if (last == checkpoint) return false;
  last = checkpoint;
  return true;
}

void AuditLog::ForgetJob(const std::string& job_id) {
  absl::MutexLock lock(&mu_);
  checkpoints_.erase(job_id);
}

grpc::experimental::Interceptor* GrpcAuditInterceptorFactory::CreateServerInterceptor(
    grpc::experimental::ServerRpcInfo* info) {
  const AuditWhen when = AuditWhenOf(info->method() != nullptr ? info->method() : "");
  if (when == AuditWhen::kNever) return nullptr;  // reads pay nothing
  return new GrpcAuditInterceptor(info, when, log_, auth_);
}

}  // namespace qnet::server
