# Compiler flags for rewind's own targets: warnings, -march=native, sanitizers, CUDA detection.
include(CheckLanguage)

# --- CUDA: AUTO turns it on when a working nvcc is found ---------------------------------------
string(TOUPPER "${REWIND_CUDA}" _rewind_cuda)
if(NOT _rewind_cuda MATCHES "^(AUTO|ON|OFF)$")
  message(FATAL_ERROR "REWIND_CUDA must be AUTO, ON or OFF (got '${REWIND_CUDA}')")
endif()
set(REWIND_ENABLE_CUDA OFF)
if(NOT _rewind_cuda STREQUAL "OFF")
  # check_language builds a small CUDA project, so a found compiler is also a working one (nvcc
  # plus a host compiler it accepts); AUTO never fails the configure. The toolkit's standard
  # location counts as found even when it is not on PATH (CI shells often have a minimal PATH).
  if(NOT CMAKE_CUDA_COMPILER AND NOT DEFINED ENV{CUDACXX} AND EXISTS /usr/local/cuda/bin/nvcc)
    find_program(_rewind_nvcc_on_path nvcc NO_CACHE NO_DEFAULT_PATH PATHS ENV PATH)
    if(NOT _rewind_nvcc_on_path)
      set(ENV{CUDACXX} /usr/local/cuda/bin/nvcc)
    endif()
  endif()
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    set(REWIND_ENABLE_CUDA ON)
  elseif(_rewind_cuda STREQUAL "ON")
    message(FATAL_ERROR "REWIND_CUDA=ON but no working CUDA compiler (nvcc) was found; "
      "put nvcc on PATH or pass -DCMAKE_CUDA_COMPILER=/usr/local/cuda/bin/nvcc")
  endif()
endif()
if(REWIND_ENABLE_CUDA)
  # Ampere and Hopper by default; -DCMAKE_CUDA_ARCHITECTURES=... (or $CUDAARCHS) overrides.
  if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES AND NOT DEFINED ENV{CUDAARCHS})
    set(CMAKE_CUDA_ARCHITECTURES "80;90" CACHE STRING "CUDA architectures to compile for")
  endif()
  # Enabled in rewind's top directory scope, so all of its directories see the CUDA variables.
  enable_language(CUDA)
  # CMake 3.25 does not know nvcc's C++20 flag (nvcc >= 12 has it): teach it, so CUDA_STANDARD 20
  # (and the C++20 that rewind::rewind's users inherit) works as with later CMake versions.
  if(NOT DEFINED CMAKE_CUDA20_STANDARD_COMPILE_OPTION OR CMAKE_CUDA20_STANDARD_COMPILE_OPTION STREQUAL "")
    if(CMAKE_CUDA_COMPILER_ID STREQUAL "NVIDIA" AND CMAKE_CUDA_COMPILER_VERSION VERSION_GREATER_EQUAL 12.0)
      set(CMAKE_CUDA20_STANDARD_COMPILE_OPTION "-std=c++20")
      set(CMAKE_CUDA20_EXTENSION_COMPILE_OPTION "-std=c++20")
      list(APPEND CMAKE_CUDA_COMPILE_FEATURES cuda_std_20)
      set(CMAKE_CUDA20_COMPILE_FEATURES cuda_std_20)
    endif()
  endif()
  set(CMAKE_CUDA_STANDARD 20)
  set(CMAKE_CUDA_STANDARD_REQUIRED ON)
  find_package(CUDAToolkit REQUIRED)
endif()
message(STATUS "rewind: CUDA backend ${REWIND_ENABLE_CUDA} (REWIND_CUDA=${REWIND_CUDA})")

# --- sanitizers ------------------------------------------------------------------------------------
set(REWIND_SANITIZE_FLAGS "")
if(REWIND_SANITIZE)
  if(NOT REWIND_SANITIZE MATCHES "^(address|undefined|leak|thread)(,(address|undefined|leak|thread))*$")
    message(FATAL_ERROR "REWIND_SANITIZE: expected a comma-separated list of address, undefined, "
      "leak, thread (got '${REWIND_SANITIZE}')")
  endif()
  set(REWIND_SANITIZE_FLAGS -fsanitize=${REWIND_SANITIZE} -fno-omit-frame-pointer
    -fno-sanitize-recover=all)
  message(STATUS "rewind: sanitizers ${REWIND_SANITIZE}")
endif()

function(rewind_apply_options target)
  target_compile_options(${target} PRIVATE
    "$<$<COMPILE_LANGUAGE:CXX>:-Wall;-Wextra;-Wno-unused-parameter>")
  if(REWIND_NATIVE)
    target_compile_options(${target} PRIVATE "$<$<COMPILE_LANGUAGE:CXX>:-march=native>")
  endif()
  if(REWIND_SANITIZE_FLAGS)
    # Everything built in this tree is instrumented; an installed sanitizer build still needs its
    # users to link the sanitizer runtimes, so only the link flags are exported.
    target_compile_options(${target} PUBLIC
      "$<BUILD_INTERFACE:$<$<COMPILE_LANGUAGE:CXX>:${REWIND_SANITIZE_FLAGS}>>")
    target_link_options(${target} PUBLIC ${REWIND_SANITIZE_FLAGS})
  endif()
endfunction()
