#include "workers/worker/worker_log.h"

#include "spdlog/sinks/stdout_color_sinks.h"
#include "spdlog/spdlog.h"

namespace qnet::worker {

void LogToStderr() {
  if (spdlog::get("qnet-worker") == nullptr) {
    spdlog::set_default_logger(spdlog::stderr_color_mt("qnet-worker"));
  }
}

void LogInfo(const std::string& message) { spdlog::info("{}", message); }
void LogWarning(const std::string& message) { spdlog::warn("{}", message); }
void LogError(const std::string& message) { spdlog::error("{}", message); }
void ShutdownLogging() { spdlog::shutdown(); }

}  // namespace qnet::worker
