// copy (with dtype conversion), fill and arange.
#include <cstring>

#include "backends/cpu/cpu_backend.h"
#include "backends/cpu/dispatch.h"
#include "backends/cpu/strided_loop.h"

namespace rw {
namespace {

template <typename To, typename From>
To convert(From v) {
  if constexpr (std::is_same_v<To, bool>) {
    return static_cast<float>(v) != 0.0f;
  } else if constexpr (std::is_same_v<To, bf16> || std::is_same_v<To, f16>) {
    return To(static_cast<float>(v));
  } else if constexpr (std::is_same_v<From, bf16> || std::is_same_v<From, f16>) {
    return static_cast<To>(static_cast<float>(v));
  } else {
    return static_cast<To>(v);
  }
}

}  // namespace

void CpuBackend::copy(const Tensor& src, const Tensor& dst) {
  RW_CHECK(src.device().is_cpu() && dst.device().is_cpu(), "cpu copy: {} -> {} is not a cpu copy",
           src.device(), dst.device());
  if (src.dtype() == dst.dtype() && src.is_contiguous() && dst.is_contiguous()) {
    std::memcpy(dst.data_ptr(), src.data_ptr(), src.nbytes());
    return;
  }
  RW_DISPATCH_ALL(dst.dtype(), "copy", [&] {
    using To = scalar_t;
    RW_DISPATCH_ALL(src.dtype(), "copy", [&] {
      using From = scalar_t;
      cpu::strided_loop<2>(dst.shape(), {&dst, &src},
                           [](std::array<char*, 2> p, int64_t n, std::array<int64_t, 2> s) {
                             if (s[0] == sizeof(To) && s[1] == sizeof(From)) {
                               auto* d = reinterpret_cast<To*>(p[0]);
                               auto* f = reinterpret_cast<const From*>(p[1]);
                               for (int64_t i = 0; i < n; ++i) d[i] = convert<To>(f[i]);
                             } else {
                               for (int64_t i = 0; i < n; ++i) {
                                 *reinterpret_cast<To*>(p[0] + i * s[0]) =
                                     convert<To>(*reinterpret_cast<const From*>(p[1] + i * s[1]));
                               }
                             }
                           });
    });
  });
}

void CpuBackend::fill(const Tensor& dst, double value) {
  RW_DISPATCH_ALL(dst.dtype(), "fill", [&] {
    scalar_t v;
    if constexpr (std::is_same_v<scalar_t, bool>) {
      v = value != 0;
    } else if constexpr (std::is_same_v<scalar_t, bf16> || std::is_same_v<scalar_t, f16>) {
      v = scalar_t(static_cast<float>(value));
    } else {
      v = static_cast<scalar_t>(value);
    }
    cpu::strided_loop<1>(dst.shape(), {&dst},
                         [v](std::array<char*, 1> p, int64_t n, std::array<int64_t, 1> s) {
                           for (int64_t i = 0; i < n; ++i)
                             *reinterpret_cast<scalar_t*>(p[0] + i * s[0]) = v;
                         });
  });
}

void CpuBackend::arange(const Tensor& out, double start, double step) {
  RW_DISPATCH_ALL(out.dtype(), "arange", [&] {
    auto* d = static_cast<scalar_t*>(out.data_ptr());
    int64_t n = out.numel();
    for (int64_t i = 0; i < n; ++i) {
      double v = start + static_cast<double>(i) * step;
      if constexpr (std::is_same_v<scalar_t, bool>) {
        d[i] = v != 0;
      } else if constexpr (std::is_same_v<scalar_t, bf16> || std::is_same_v<scalar_t, f16>) {
        d[i] = scalar_t(static_cast<float>(v));
      } else {
        d[i] = static_cast<scalar_t>(v);
      }
    }
  });
}

}  // namespace rw
