// matmul on cuBLAS. cuBLAS is column-major, rewind row-major: a row-major out [M, N] is the
// column-major out^T [N, M], so every product is computed as out^T = b^T a^T, with b as cuBLAS's
// first operand and a as its second. A row-major operand is its own transpose in column-major
// terms (op N), a column-major one (a transposed view) is passed with op T; any other layout
// (broadcast or overlapping matrix dims) is copied to a dense temporary first.
//
// Batch dims follow the CPU backend's layout rules: dims where out has extent 1 go, a stride-0
// (expanded) or extent-1 operand dim is a broadcast one (stride 0 in the strided-batched call),
// and neighbouring dims that every operand walks uniformly merge. One batch dim left: one
// strided-batched GEMM; several: a loop over the outer ones. A shared right operand with a left
// operand whose batch rows follow each other becomes one tall GEMM (the x @ W^T of every linear).
//
// Precision: f32 accumulates in f32 (TF32 tensor cores only when allow_tf32()), f64 in f64,
// bf16/f16 in f32 with one rounding at the end (split-K reductions in reduced precision are
// disallowed, as the CPU backend rounds once). A bias is copied into out first and added through
// beta = 1, inside the same f32 accumulation.
#include <atomic>
#include <vector>

#include "backends/cuda/cuda_backend.h"
#include "backends/cuda/cuda_check.h"
#include "backends/cuda/cuda_context.h"
#include "core/error.h"

namespace rw::cuda {
namespace {

std::atomic<bool> g_allow_tf32{false};

// One batch dim of the product: out's extent and each operand's (1 = broadcast) and stride.
struct BatchDim {
  int64_t n = 1;
  int64_t a_ext = 1, a_stride = 0;
  int64_t b_ext = 1, b_stride = 0;
};

struct GemmLayout {
  std::vector<BatchDim> batch;  // outermost first
  int64_t M = 0, N = 0, K = 0;
  int64_t a_sm = 0, a_sk = 0, b_sk = 0, b_sn = 0;  // strides of the matrix dims, in elements
};

// A stride for a dim of extent 1 is meaningless; give it a value that makes the matrix row- or
// column-major, whichever the other dim implies (the CPU backend's rule).
void normalize_matrix_strides(int64_t rows, int64_t cols, int64_t& s_row, int64_t& s_col) {
  if (rows == 1) s_row = s_col == 1 ? cols : 1;
  if (cols == 1) s_col = s_row == 1 ? rows : 1;
}

// A [rows, cols] matrix as a cuBLAS operand holding its column-major transpose: row-major
// (unit column stride) is op N with leading dim s_row, column-major is op T with leading dim
// s_col. `valid` is false for any other layout.
struct BlasOperand {
  bool valid = false;
  cublasOperation_t op = CUBLAS_OP_N;
  int64_t ld = 0;
};

BlasOperand blas_operand(int64_t rows, int64_t cols, int64_t s_row, int64_t s_col) {
  if (s_col == 1 && s_row >= std::max<int64_t>(1, cols)) return {true, CUBLAS_OP_N, s_row};
  if (s_row == 1 && s_col >= std::max<int64_t>(1, rows)) return {true, CUBLAS_OP_T, s_col};
  return {};
}

BlasOperand a_operand(const GemmLayout& L) { return blas_operand(L.M, L.K, L.a_sm, L.a_sk); }
BlasOperand b_operand(const GemmLayout& L) { return blas_operand(L.K, L.N, L.b_sk, L.b_sn); }

GemmLayout make_layout(const Tensor& a, const Tensor& b, const Tensor& out) {
  GemmLayout L;
  const int64_t rank = out.dim();
  L.M = out.size(-2);
  L.N = out.size(-1);
  L.K = a.size(-1);
  L.a_sm = a.stride(-2);
  L.a_sk = a.stride(-1);
  L.b_sk = b.stride(-2);
  L.b_sn = b.stride(-1);
  normalize_matrix_strides(L.M, L.K, L.a_sm, L.a_sk);
  normalize_matrix_strides(L.K, L.N, L.b_sk, L.b_sn);
  for (int64_t d = 0; d < rank - 2; ++d) {
    const auto i = static_cast<std::size_t>(d);
    const int64_t n = out.shape()[i];
    if (n == 1) continue;
    const int64_t as = a.strides()[i], ae = as == 0 ? 1 : a.shape()[i];
    const int64_t bs = b.strides()[i], be = bs == 0 ? 1 : b.shape()[i];
    if (!L.batch.empty()) {
      // Merge into the previous (outer) dim when each operand is either broadcast in both or
      // walks both with one stride.
      auto mergeable = [](int64_t pe, int64_t ps, int64_t e, int64_t s) {
        return (pe == 1 && e == 1) || (pe != 1 && e != 1 && ps == s * e);
      };
      BatchDim& p = L.batch.back();
      if (mergeable(p.a_ext, p.a_stride, ae, as) && mergeable(p.b_ext, p.b_stride, be, bs)) {
        p.n *= n;
        if (ae != 1) p.a_ext *= ae;
        if (be != 1) p.b_ext *= be;
        p.a_stride = as;
        p.b_stride = bs;
        continue;
      }
    }
    L.batch.push_back({n, ae, as, be, bs});
  }
  // One shared right operand and a left operand whose batch rows follow each other: one tall GEMM
  // ([batch * M, K] @ [K, N]) instead of a batch of small ones, when cuBLAS can still read a.
  if (L.batch.size() == 1 && L.batch[0].b_ext == 1 && L.batch[0].a_ext != 1 &&
      L.batch[0].a_stride == L.M * L.a_sm) {
    GemmLayout tall = L;
    tall.M *= L.batch[0].n;
    tall.batch.clear();
    normalize_matrix_strides(tall.M, tall.K, tall.a_sm, tall.a_sk);
    if (a_operand(tall).valid) return tall;
  }
  return L;
}

// A dense copy of a matmul operand: stride-0 (expanded) batch dims, which the layout treats as
// broadcast, keep extent 1 instead of being materialised.
Tensor dense_operand(Backend& backend, const Tensor& t) {
  Tensor v = t.detach();
  for (int64_t d = 0; d + 2 < v.dim(); ++d) {
    if (v.strides()[static_cast<std::size_t>(d)] == 0 && v.shape()[static_cast<std::size_t>(d)] > 1)
      v = v.narrow(d, 0, 1);
  }
  Tensor c = empty(v.shape(), options_of(v));
  backend.copy(v, c);
  return c;
}

// cuBLAS types of one output dtype.
struct GemmTypes {
  cudaDataType_t data = CUDA_R_32F;
  cublasComputeType_t compute = CUBLAS_COMPUTE_32F;
  cublasMath_t math = CUBLAS_DEFAULT_MATH;
  bool f64_scalars = false;  // alpha and beta are double (else float)
};

GemmTypes gemm_types(DType dtype) {
  switch (dtype) {
    case DType::f32:
      if (allow_tf32()) {
        return {CUDA_R_32F, CUBLAS_COMPUTE_32F_FAST_TF32, CUBLAS_TF32_TENSOR_OP_MATH, false};
      }
      return {CUDA_R_32F, CUBLAS_COMPUTE_32F, CUBLAS_DEFAULT_MATH, false};
    case DType::f64:
      return {CUDA_R_64F, CUBLAS_COMPUTE_64F, CUBLAS_DEFAULT_MATH, true};
    case DType::bf16:
      return {CUDA_R_16BF, CUBLAS_COMPUTE_32F, CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION,
              false};
    case DType::f16:
      return {CUDA_R_16F, CUBLAS_COMPUTE_32F, CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION,
              false};
    default:
      throw Error(fmt::format(
          "matmul (cuda): dtype {} is not supported (f32, f64, bf16 and f16 are, as on the CPU)",
          dtype));
  }
}

// Runs every GEMM of the layout: a strided-batched call over the innermost batch dim, looped over
// the outer ones. out (contiguous) already holds the bias when beta is 1.
void run_gemms(cublasHandle_t handle, const GemmLayout& L, const Tensor& a, const Tensor& b,
               const Tensor& out, bool accumulate) {
  const GemmTypes types = gemm_types(out.dtype());
  RW_CUBLAS_CHECK(cublasSetMathMode(handle, types.math));
  const BlasOperand opa = a_operand(L), opb = b_operand(L);
  RW_CHECK(opa.valid && opb.valid,
           "matmul (cuda): internal error: operand layouts a [{}, {}] strides ({}, {}), b [{}, {}] "
           "strides ({}, {}) are not BLAS layouts after copying",
           L.M, L.K, L.a_sm, L.a_sk, L.K, L.N, L.b_sk, L.b_sn);
  const float alpha32 = 1.0f, beta32 = accumulate ? 1.0f : 0.0f;
  const double alpha64 = 1.0, beta64 = accumulate ? 1.0 : 0.0;
  const void* alpha = types.f64_scalars ? static_cast<const void*>(&alpha64) : &alpha32;
  const void* beta = types.f64_scalars ? static_cast<const void*>(&beta64) : &beta32;

  const auto es = static_cast<int64_t>(dtype_size(out.dtype()));
  const auto* pa = static_cast<const char*>(a.data_ptr());
  const auto* pb = static_cast<const char*>(b.data_ptr());
  auto* pc = static_cast<char*>(out.data_ptr());

  const std::size_t outer_dims = L.batch.empty() ? 0 : L.batch.size() - 1;
  const BatchDim inner = L.batch.empty() ? BatchDim{} : L.batch.back();
  const int64_t stride_a = inner.a_ext == 1 ? 0 : inner.a_stride;
  const int64_t stride_b = inner.b_ext == 1 ? 0 : inner.b_stride;
  const int64_t stride_c = L.M * L.N;
  int64_t outer = 1;
  for (std::size_t d = 0; d < outer_dims; ++d) outer *= L.batch[d].n;

  for (int64_t o = 0; o < outer; ++o) {
    // Offsets of this outer batch element (broadcast dims contribute nothing).
    int64_t off_a = 0, off_b = 0, rem = o;
    for (std::size_t d = outer_dims; d-- > 0;) {
      const BatchDim& bd = L.batch[d];
      const int64_t idx = rem % bd.n;
      rem /= bd.n;
      if (bd.a_ext != 1) off_a += idx * bd.a_stride;
      if (bd.b_ext != 1) off_b += idx * bd.b_stride;
    }
    const int64_t off_c = o * inner.n * stride_c;
    // out^T [N, M] = b^T [N, K] @ a^T [K, M], all column-major.
    RW_CUBLAS_CHECK(cublasGemmStridedBatchedEx_64(
        handle, opb.op, opa.op, L.N, L.M, L.K, alpha, pb + off_b * es, types.data, opb.ld, stride_b,
        pa + off_a * es, types.data, opa.ld, stride_a, beta, pc + off_c * es, types.data, L.N,
        stride_c, inner.n, types.compute, CUBLAS_GEMM_DEFAULT));
  }
}

}  // namespace

void set_allow_tf32(bool allow) { g_allow_tf32.store(allow, std::memory_order_relaxed); }
bool allow_tf32() { return g_allow_tf32.load(std::memory_order_relaxed); }

void CudaBackend::matmul(const Tensor& a, const Tensor& b, const Tensor& bias, const Tensor& out) {
  if (out.numel() == 0) return;
  RW_CHECK(out.is_contiguous(), "matmul (cuda): out must be contiguous (shape {}, strides {})",
           out.shape(), out.strides());
  gemm_types(out.dtype());  // rejects unsupported dtypes before anything runs
  RW_CHECK(a.dtype() == out.dtype() && b.dtype() == out.dtype(),
           "matmul (cuda): a, b and out must have one dtype, got {}, {} and {}", a.dtype(),
           b.dtype(), out.dtype());
  DeviceGuard guard(device_);
  if (bias.defined()) {
    copy(bias.expand(out.shape()), out);  // added through beta = 1 (or alone when K = 0)
  } else if (a.size(-1) == 0) {
    RW_CUDA_CHECK(cudaMemsetAsync(out.data_ptr(), 0, out.nbytes(), stream(device_)));
  }
  if (a.size(-1) == 0) return;  // an empty sum: just the bias, or zeros

  Tensor A = a, B = b;
  GemmLayout L = make_layout(A, B, out);
  if (!a_operand(L).valid) {
    A = dense_operand(*this, a);
    L = make_layout(A, B, out);
  }
  if (!b_operand(L).valid) {
    B = dense_operand(*this, b);
    L = make_layout(A, B, out);
  }
  run_gemms(cublas(device_), L, A, B, out, bias.defined());
}

}  // namespace rw::cuda
