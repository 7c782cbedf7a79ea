#pragma once
// Helpers of the CUDA suite. Every case starts with RW_REQUIRE_GPU(): without a GPU it prints
// "skipped: no GPU" (ctest's SKIP_REGULAR_EXPRESSION turns that into a skip) and returns.
#include <doctest/doctest.h>

#include <cstdio>

#include "core/device.h"

#define RW_REQUIRE_GPU()                                                     \
  do {                                                                       \
    if (::rw::cuda_device_count() == 0) {                                    \
      std::puts("skipped: no GPU (no CUDA device visible to this process)"); \
      MESSAGE("skipped: no GPU");                                            \
      return;                                                                \
    }                                                                        \
  } while (0)
