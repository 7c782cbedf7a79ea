#include "backends/cpu/cpu_backend.h"

namespace rw {

Backend* make_cpu_backend() {
  static CpuBackend backend;
  return &backend;
}

}  // namespace rw
