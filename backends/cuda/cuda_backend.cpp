#include "backends/cuda/cuda_backend.h"

#include <array>
#include <memory>

#include "backends/cuda/cuda_context.h"
#include "core/error.h"

namespace rw {

namespace cuda {

TensorArg arg(const Tensor& t, const char* op) {
  TensorArg a;
  a.data = const_cast<void*>(t.data_ptr());
  a.dtype = t.dtype();
  a.numel = t.numel();
  a.contiguous = t.is_contiguous();
  // Merge each dim into the previous kept one when they are contiguous with each other (or of
  // extent 1), so most strided views launch with rank <= 3.
  int64_t sizes[64], strides[64];
  int rank = 0;
  for (int64_t d = 0; d < t.dim(); ++d) {
    int64_t size = t.size(d), stride = t.stride(d);
    if (size == 1) continue;
    if (rank > 0 && strides[rank - 1] == size * stride) {
      sizes[rank - 1] *= size;
      strides[rank - 1] = stride;
      continue;
    }
    RW_CHECK(rank < 64, "{} (cuda): tensor of rank {} is not supported", op, t.dim());
    sizes[rank] = size;
    strides[rank] = stride;
    ++rank;
  }
  RW_CHECK(rank <= kMaxDims,
           "{} (cuda): a view of shape {} and strides {} needs {} dims after merging; at most {} "
           "are supported (make it contiguous first)",
           op, t.shape(), t.strides(), rank, kMaxDims);
  a.rank = rank;
  for (int d = 0; d < rank; ++d) {
    a.sizes[d] = sizes[d];
    a.strides[d] = strides[d];
  }
  return a;
}

TensorArg arg_or_null(const Tensor& t, const char* op) {
  return t.defined() ? arg(t, op) : TensorArg{};
}

}  // namespace cuda

// One backend per device, created on first use; a device that does not exist is an error naming
// it and the number of devices there are.
Backend* make_cuda_backend(int device) {
  static std::array<std::unique_ptr<cuda::CudaBackend>, kMaxDevicesPerType> backends;
  int count = cuda::device_count();
  RW_CHECK(device >= 0 && device < count, "cuda:{}: no such CUDA device ({} visible{})", device,
           count, count == 0 ? "; no GPU or no usable NVIDIA driver on this machine" : "");
  auto& b = backends[static_cast<std::size_t>(device)];
  if (!b) b = std::make_unique<cuda::CudaBackend>(device);
  return b.get();
}

}  // namespace rw
