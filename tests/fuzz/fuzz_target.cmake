# Fuzz targets: one LLVMFuzzerTestOneInput per parser of bytes from outside, each built twice.
#  - Always: <name>_fuzz_replay, the target with tests/fuzz/replay_main.cc, registered as the
#    ctest TEST that replays its seed corpus with deterministic mutations (label fuzz_replay).
#  - With -DQNET_FUZZ=ON (clang; every target then has ASan and UBSan): <name>_fuzzer, linked
#    with libFuzzer, and the ctest Fuzz.<name> (label fuzz) that fuzzes it for
#    QNET_FUZZ_SECONDS, new inputs going to the build's fuzz/corpus/<name>, crashes to
#    fuzz/crashes/. `cmake --build B --target qnet_fuzzers` builds them all (qnet_fuzz_replays
#    the replay drivers).
#
#   qnet_add_fuzz_target(npy_header TEST Datasets.Fuzz.npy_header SOURCES fuzz/npy_header_fuzzer.cc
#                        CORPUS ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/corpus/npy_header
#                        LIBRARIES qnet_datasets)
# REPLAY_ARGS go to the replay driver, e.g. "--mutations 200" for a target whose inputs are slow.
set(QNET_FUZZ_SECONDS 20 CACHE STRING "How long each Fuzz.<name> ctest fuzzes (QNET_FUZZ=ON)")
add_custom_target(qnet_fuzz_replays)
if(QNET_FUZZ)
  add_custom_target(qnet_fuzzers)
endif()

function(qnet_add_fuzz_target name)
  cmake_parse_arguments(PARSE_ARGV 1 ARG "" "TEST;CORPUS" "SOURCES;LIBRARIES;DEFINITIONS;REPLAY_ARGS")
  add_executable(${name}_fuzz_replay ${ARG_SOURCES} ${PROJECT_SOURCE_DIR}/tests/fuzz/replay_main.cc)
  add_test(NAME ${ARG_TEST} COMMAND ${name}_fuzz_replay ${ARG_REPLAY_ARGS} ${ARG_CORPUS})
  set_tests_properties(${ARG_TEST} PROPERTIES TIMEOUT 120 LABELS fuzz_replay)
  add_dependencies(qnet_fuzz_replays ${name}_fuzz_replay)
  set(targets ${name}_fuzz_replay)
  if(QNET_FUZZ)
    add_executable(${name}_fuzzer ${ARG_SOURCES})
    target_link_options(${name}_fuzzer PRIVATE -fsanitize=fuzzer)
    add_dependencies(qnet_fuzzers ${name}_fuzzer)
    set(work ${CMAKE_BINARY_DIR}/fuzz)
    file(MAKE_DIRECTORY ${work}/corpus/${name} ${work}/crashes)
    # The first folder receives what the fuzzer finds; the committed seeds stay as they are.
    add_test(NAME Fuzz.${name}
             COMMAND ${name}_fuzzer -max_total_time=${QNET_FUZZ_SECONDS} -timeout=10
                     -rss_limit_mb=2048 -print_final_stats=1
                     -artifact_prefix=${work}/crashes/${name}- ${work}/corpus/${name}
                     ${ARG_CORPUS})
    math(EXPR timeout "${QNET_FUZZ_SECONDS} + 120")
    set_tests_properties(Fuzz.${name} PROPERTIES TIMEOUT ${timeout} LABELS fuzz)
    list(APPEND targets ${name}_fuzzer)
  endif()
  foreach(target ${targets})
    target_include_directories(${target} PRIVATE ${PROJECT_SOURCE_DIR})
    target_compile_definitions(${target} PRIVATE ${ARG_DEFINITIONS})
    target_link_libraries(${target} PRIVATE ${ARG_LIBRARIES} qnet_warnings)
  endforeach()
endfunction()
