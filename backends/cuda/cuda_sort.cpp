// Stable sort along a dim on the GPU (CUB radix sorts, sort_kernels.cu). The host side views x as
// [A, N, B] around the dim and provides the scratch memory from rewind's allocator.
#include <limits>
#include <vector>

#include "backends/cuda/cuda_backend.h"
#include "backends/cuda/cuda_context.h"
#include "backends/cuda/sort_kernels.h"
#include "core/error.h"

namespace rw::cuda {
namespace {

// Scratch blocks as u8 tensors on the device, alive until the host call returns.
class TensorScratch final : public DeviceScratch {
 public:
  explicit TensorScratch(Device device) : device_(device) {}
  void* allocate(std::size_t bytes) override {
    blocks_.push_back(
        empty({static_cast<int64_t>(bytes)}, {.dtype = DType::u8, .device = device_}));
    return blocks_.back().data_ptr();
  }

 private:
  Device device_;
  std::vector<Tensor> blocks_;
};

}  // namespace

void CudaBackend::sort(const Tensor& x, int64_t dim, bool descending, const Tensor& values,
                       const Tensor& indices) {
  if (x.numel() == 0) return;
  RW_CHECK(x.is_contiguous() && values.is_contiguous() && indices.is_contiguous(),
           "sort (cuda): x, values and indices must be contiguous (strides {}, {}, {})",
           x.strides(), values.strides(), indices.strides());
  // Positions in the radix sort are 32-bit.
  RW_CHECK(x.numel() <= int64_t{std::numeric_limits<uint32_t>::max()},
           "sort (cuda): at most 2^32 - 1 elements are supported, got shape {} ({} elements)",
           x.shape(), x.numel());
  SortGeometry g;
  const Shape& shape = x.shape();
  if (!shape.empty()) {
    for (int64_t d = 0; d < dim; ++d) g.A *= shape[static_cast<std::size_t>(d)];
    g.N = shape[static_cast<std::size_t>(dim)];
    for (auto d = static_cast<std::size_t>(dim) + 1; d < shape.size(); ++d) g.B *= shape[d];
  }
  DeviceGuard guard(device_);
  TensorScratch scratch(x.device());
  launch_sort(x.data_ptr(), values.data_ptr(), indices.data<int64_t>(), x.dtype(), g, descending,
              scratch, stream(device_));
}

}  // namespace rw::cuda
