# qnet_worker_service: the lease/heartbeat/upload logic of `qnet-worker serve` (worker_loop.h) and
# the job sandbox (sandbox.h), without LibTorch (the engine is injected), so their tests build and
# run without the engine. Included by this folder's `# --- serve ---` block and, when the engine is
# not configured, by tests/client/CMakeLists.txt; whoever comes first defines the target.
function(qnet_add_worker_service_library)
  if(TARGET qnet_worker_service)
    return()
  endif()
  set(dir ${PROJECT_SOURCE_DIR}/workers/worker)
  # The sandbox's private messages (sandbox.proto), which import the API's job.proto.
  set(gen ${PROJECT_BINARY_DIR}/gen/worker)
  set(sandbox_pb ${gen}/workers/worker/sandbox.pb)
  file(MAKE_DIRECTORY ${gen})
  add_custom_command(
    OUTPUT ${sandbox_pb}.cc ${sandbox_pb}.h
    COMMAND protobuf::protoc --proto_path=${PROJECT_SOURCE_DIR} --proto_path=${PROJECT_SOURCE_DIR}/proto
            --cpp_out=${gen} ${dir}/sandbox.proto
    DEPENDS ${dir}/sandbox.proto ${PROJECT_SOURCE_DIR}/proto/qnet/v1/job.proto
    COMMENT "protoc sandbox.proto")
  find_package(PkgConfig REQUIRED)
  pkg_check_modules(LIBSECCOMP REQUIRED IMPORTED_TARGET libseccomp)

  add_library(qnet_worker_service STATIC
    ${dir}/blob_cache.cc
    ${dir}/sandbox.cc
    ${dir}/sandbox_child.cc
    ${dir}/sandbox_protocol.cc
    ${sandbox_pb}.cc
    ${dir}/worker_checkpoint.cc
    ${dir}/worker_convert.cc
    ${dir}/worker_log.cc
    ${dir}/worker_loop.cc)
  target_include_directories(qnet_worker_service PUBLIC ${PROJECT_SOURCE_DIR})
  target_include_directories(qnet_worker_service SYSTEM PUBLIC ${gen})
  target_link_libraries(qnet_worker_service
    PUBLIC qnet_client qnet_proto qnet_common qnet_job absl::status absl::statusor gRPC::grpc++
    PRIVATE spdlog::spdlog absl::strings PkgConfig::LIBSECCOMP qnet_warnings)
endfunction()
