# qnet_worker_service: the lease/heartbeat/upload logic of `qnet-worker serve` (worker_loop.h),
# without LibTorch (the engine is injected), so its tests build and run without the engine.
# Included by this folder's `# --- serve ---` block and, when the engine is not configured, by
# tests/client/CMakeLists.txt; whoever comes first defines the target.
function(qnet_add_worker_service_library)
  if(TARGET qnet_worker_service)
    return()
  endif()
  set(dir ${PROJECT_SOURCE_DIR}/workers/worker)
  add_library(qnet_worker_service STATIC
    ${dir}/blob_cache.cc
    ${dir}/worker_checkpoint.cc
    ${dir}/worker_convert.cc
    ${dir}/worker_log.cc
    ${dir}/worker_loop.cc)
  target_include_directories(qnet_worker_service PUBLIC ${PROJECT_SOURCE_DIR})
  target_link_libraries(qnet_worker_service
    PUBLIC qnet_client qnet_proto qnet_common qnet_job absl::status absl::statusor gRPC::grpc++
    PRIVATE spdlog::spdlog absl::strings qnet_warnings)
endfunction()
