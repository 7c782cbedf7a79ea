# ctest driver (cmake -P) for the consumer test: installs the current build into a fresh prefix
# under the build dir, configures and builds tests/consumer/ against it, and runs the program.
# MODE=subdirectory builds the consumer against the source tree (add_subdirectory) instead.
# Any failing step fails the test with the step's output.
#
# Inputs (-D): MODE, REWIND_SOURCE_DIR, REWIND_BINARY_DIR, CONFIG, WORK_DIR, GENERATOR,
# CXX_COMPILER, BUILD_TYPE.
cmake_minimum_required(VERSION 3.25)

foreach(var MODE REWIND_SOURCE_DIR REWIND_BINARY_DIR WORK_DIR GENERATOR CXX_COMPILER)
  if(NOT DEFINED ${var} OR "${${var}}" STREQUAL "")
    message(FATAL_ERROR "run_consumer_test.cmake: -D${var}=... is required")
  endif()
endforeach()

function(step description)
  message(STATUS "consumer test: ${description}")
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "consumer test: '${description}' failed (${rc}); files kept in "
      "${run_dir}:\n${out}")
  endif()
  if(description MATCHES "^run")
    message("${out}")  # the program's own output; the other steps' logs show only on failure
  endif()
endfunction()

# A fresh directory per run: stale installed headers must not hide a missing one, and two ctest
# runs in one build dir must not delete each other's files. Removed again when the test passes.
string(TIMESTAMP stamp "%Y%m%d-%H%M%S")
string(RANDOM LENGTH 6 salt)
set(run_dir "${WORK_DIR}/run-${stamp}-${salt}")
file(REMOVE_RECURSE "${run_dir}")
set(prefix "${run_dir}/prefix")
set(build "${run_dir}/build")
set(configure_args -S "${REWIND_SOURCE_DIR}/tests/consumer" -B "${build}" -G "${GENERATOR}"
  "-DCMAKE_CXX_COMPILER=${CXX_COMPILER}" "-DREWIND_CONSUMER_MODE=${MODE}")
if(BUILD_TYPE)
  list(APPEND configure_args "-DCMAKE_BUILD_TYPE=${BUILD_TYPE}")
endif()

if(MODE STREQUAL "package")
  set(config_args "")
  if(CONFIG)
    set(config_args --config "${CONFIG}")
  endif()
  step("install ${REWIND_BINARY_DIR} into ${prefix}"
    "${CMAKE_COMMAND}" --install "${REWIND_BINARY_DIR}" --prefix "${prefix}" ${config_args})
  foreach(f include/rewind/core/tensor.h include/rewind/core/ops/linalg.h
      include/rewind/autograd/tape.h include/rewind/backends/backend.h)
    if(NOT EXISTS "${prefix}/${f}")
      message(FATAL_ERROR "consumer test: the install lacks ${f}")
    endif()
  endforeach()
  list(APPEND configure_args "-DCMAKE_PREFIX_PATH=${prefix}")
else()
  # Only the library: the consumer must not get rewind's tests or tools.
  list(APPEND configure_args "-DREWIND_SOURCE_DIR=${REWIND_SOURCE_DIR}")
  # This build compiles the library once more, and its CUDA kernels (two architectures) were
  # most of that: 420 s of a 27-minute CI run. The main build compiles them already; what this
  # test checks is the subproject's CMake wiring, the same with or without them.
  list(APPEND configure_args "-DREWIND_CUDA=OFF")
endif()

step("configure the consumer (${MODE})" "${CMAKE_COMMAND}" ${configure_args})
step("build the consumer" "${CMAKE_COMMAND}" --build "${build}")
if(MODE STREQUAL "subdirectory" AND EXISTS "${build}/rewind/tests")
  message(FATAL_ERROR "consumer test: as a subproject rewind must not build its tests")
endif()
step("run the consumer" "${build}/consumer")
file(REMOVE_RECURSE "${run_dir}")
