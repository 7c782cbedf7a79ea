#pragma once
// Launcher of the stable sort along a dim (CUB radix sorts), shared by the host wrapper
// (cuda_sort.cpp) and the kernels (sort_kernels.cu); nvcc-safe (no fmt).
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "core/dtype_id.h"

namespace rw::cuda {

// Device memory for a launcher's temporaries, handed out by the host side from rewind's caching
// allocator (so it is counted like every other byte) and released when the host call returns.
// That is safe while the kernels are still queued: every kernel of a device runs on its one
// stream, so a later user of the same block is ordered after them.
class DeviceScratch {
 public:
  virtual void* allocate(std::size_t bytes) = 0;

 protected:
  ~DeviceScratch() = default;
};

// x, values and indices are contiguous [A, N, B] (N = the sorted dim) with A * N * B < 2^32.
struct SortGeometry {
  int64_t A = 1, N = 1, B = 1;
};

// values = x sorted along N, indices = the source position of each value (i64). Stable: ties keep
// their input order; NaNs sort last ascending and first descending; -0 and +0 tie.
void launch_sort(const void* x, void* values, int64_t* indices, DType dtype, SortGeometry g,
                 bool descending, DeviceScratch& scratch, cudaStream_t stream);

}  // namespace rw::cuda
