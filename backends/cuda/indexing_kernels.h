#pragma once
// Launchers of the indexing kernels: gather, scatter_add, index_select, index_add. Shared by the
// host wrappers (cuda_indexing.cpp, which turns Tensors into these geometries) and the kernels
// (indexing_kernels.cu); nvcc-safe (no fmt). Every pointer is at the first element of a
// contiguous tensor on the current device; indices are in range (checked by the op layer).
#include <cuda_runtime.h>

#include <cstdint>

#include "backends/cuda/tensor_arg.h"
#include "core/dtype_id.h"

namespace rw::cuda {

// gather / scatter_add: a contiguous index tensor (the out or src tensor has its shape) addressing
// a contiguous data tensor along `dim`. Element i of the index has the row-major coordinates c of
// i in `sizes`; the data element it names is at
//   sum over d != dim of c[d] * data_strides[d]  +  index[i] * data_strides[dim].
// Dims of extent 1 are dropped and neighbouring dims that walk the data uniformly are merged (the
// host side does it), so `dim` is the position of the indexed dim after merging.
struct IndexedGeometry {
  int rank = 0;
  int dim = 0;
  int64_t numel = 0;  // of the index
  int64_t sizes[kMaxDims] = {};
  int64_t data_strides[kMaxDims] = {};
};

// out[i] = x[offset of index i]; elements are moved as raw bytes of the dtype's size.
void launch_gather(const void* x, const int64_t* index, void* out, DType dtype,
                   const IndexedGeometry& g, cudaStream_t stream);

// dst[offset of index i] += src[i] with atomic adds: floating-point sums over repeated indices
// are accumulated in a nondeterministic order (results may differ in the last bits from run to
// run and from the CPU backend); integer sums are exact (wrapping like the CPU's), bool is `or`.
void launch_scatter_add(void* dst, const int64_t* index, const void* src, DType dtype,
                        const IndexedGeometry& g, cudaStream_t stream);

// index_select / index_add: the data tensor viewed as [A, N, B] around dim and the selection
// (out of index_select, src of index_add) as [A, K, B], with index[K].
struct SliceGeometry {
  int64_t A = 1, N = 1, K = 1, B = 1;
};

// out[a][k][b] = x[a][index[k]][b], moved as raw bytes (whole rows in 16-byte units when the
// sizes and addresses allow).
void launch_index_select(const void* x, const int64_t* index, void* out, DType dtype,
                         const SliceGeometry& g, cudaStream_t stream);

// dst[a][index[k]][b] += src[a][k][b] with atomic adds (same ordering caveat as scatter_add).
void launch_index_add(void* dst, const int64_t* index, const void* src, DType dtype,
                      const SliceGeometry& g, cudaStream_t stream);

}  // namespace rw::cuda
