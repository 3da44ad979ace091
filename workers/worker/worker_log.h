// Logging for `qnet-worker serve` code that is compiled with LibTorch's headers. LibTorch bundles
// its own {fmt} (a newer major version than the system one spdlog is built against), so spdlog's
// headers cannot be included next to torch's; serve.cc logs through these functions instead,
// which the torch-free qnet_worker_service implements with spdlog.
//
//   qnet::worker::LogToStderr();
//   qnet::worker::LogInfo("worker w-1 serving 127.0.0.1:50051");
#ifndef QNET_WORKERS_WORKER_WORKER_LOG_H_
#define QNET_WORKERS_WORKER_WORKER_LOG_H_

#include <string>

namespace qnet::worker {

// Sends spdlog's default logger to stderr (stdout stays free for the caller).
void LogToStderr();
void LogInfo(const std::string& message);
void LogWarning(const std::string& message);
void LogError(const std::string& message);
// Flushes and stops logging; call before _Exit.
void ShutdownLogging();

}  // namespace qnet::worker

#endif  // QNET_WORKERS_WORKER_WORKER_LOG_H_
