// Host side of random on a CUDA device: computes the clamp bound of uniform samples, then launches
// the kernel of random_kernels.cu, which produces the CPU backend's numbers for the same state.
#include <cmath>
#include <limits>

#include "backends/cuda/cuda_backend.h"
#include "backends/cuda/cuda_context.h"
#include "backends/cuda/random_kernels.h"
#include "core/error.h"
#include "core/half.h"

namespace rw::cuda {
namespace {

// The next half value towards -infinity (sign-magnitude bits).
template <typename H>
H half_step_down(H v) {
  H r = v;
  const uint16_t magnitude = v.bits & 0x7fffu;
  if (v.bits & 0x8000u) {
    r.bits = static_cast<uint16_t>(v.bits + 1);
  } else if (magnitude == 0) {
    r.bits = 0x8001u;  // the smallest negative subnormal
  } else {
    r.bits = static_cast<uint16_t>(v.bits - 1);
  }
  return r;
}

// The largest value of `dtype` strictly below `high`, as a double (exact in that dtype). The CPU
// backend clamps uniform samples to it because the cast to a narrower dtype can round a sample
// up to `high`; this repeats cpu_random.cpp's largest_below so both clamp to the same value.
double largest_below(DType dtype, double high) {
  switch (dtype) {
    case DType::f64:
      return std::nextafter(high, -std::numeric_limits<double>::infinity());
    case DType::f32: {
      auto f = static_cast<float>(high);
      while (static_cast<double>(f) >= high)
        f = std::nextafter(f, -std::numeric_limits<float>::infinity());
      return f;
    }
    case DType::bf16: {
      bf16 h(static_cast<float>(high));
      while (static_cast<double>(static_cast<float>(h)) >= high) h = half_step_down(h);
      return static_cast<float>(h);
    }
    case DType::f16: {
      f16 h(static_cast<float>(high));
      while (static_cast<double>(static_cast<float>(h)) >= high) h = half_step_down(h);
      return static_cast<float>(h);
    }
    default:
      return 0;  // integer and bool samples are not clamped
  }
}

}  // namespace

void CudaBackend::random(RandomKind kind, PhiloxState state, double a, double b,
                         const Tensor& out) {
  if (out.numel() == 0) return;
  RW_CHECK(out.is_contiguous(), "cuda random: out must be contiguous (shape {}, strides {})",
           out.shape(), out.strides());
  const double uniform_max = kind == RandomKind::uniform ? largest_below(out.dtype(), b) : 0.0;
  DeviceGuard guard(device_);
  launch_random(kind, state, a, b, uniform_max, arg(out, "random"), stream(device_));
}

}  // namespace rw::cuda
