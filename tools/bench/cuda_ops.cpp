// `rewind-bench cuda-ops` (CUDA builds only): on cuda:0,
//   (a) TFLOP/s of rw::matmul next to a direct cuBLAS call (cublasGemmStridedBatchedEx) on the same
//       data and the same stream, for square sizes and the batched shapes of chunked attention, in
//       f32 (TF32 off and on) and bf16 (fp32 accumulation);
//   (b) the memory bandwidth reached by memory-bound kernels (add, softmax, layer norm, sum,
//       gather, sort) in GB/s, counting the bytes each must read and write once.
// Times come from CUDA events around `reps` back-to-back calls (after a warm-up); best of trials.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <functional>

#include <fmt/format.h>

#include "backends/cuda/cuda_backend.h"
#include "backends/cuda/cuda_check.h"
#include "backends/cuda/cuda_context.h"
#include "core/ops.h"
#include "registry.h"

namespace rw::bench {
namespace {

constexpr Device kGpu = Device::cuda(0);

struct CudaOpsOptions {
  std::vector<int64_t> sizes = {1024, 2048, 4096, 8192};
  int64_t batch = 4096;  // attention chunks (batch * heads * chunks * rounds)
  int64_t trials = 5;
  double min_time = 0.05;  // seconds per trial
  bool skip_matmul = false;
  bool skip_bandwidth = false;
};

// Seconds per call of `f`, best of `trials` trials of `reps` calls, timed with events on the
// device's stream.
double time_per_call(const std::function<void()>& f, const CudaOpsOptions& opt) {
  cudaStream_t s = cuda::stream(0);
  cudaEvent_t start, stop;
  RW_CUDA_CHECK(cudaEventCreate(&start));
  RW_CUDA_CHECK(cudaEventCreate(&stop));
  auto run = [&](int64_t reps) {
    RW_CUDA_CHECK(cudaEventRecord(start, s));
    for (int64_t i = 0; i < reps; ++i) f();
    RW_CUDA_CHECK(cudaEventRecord(stop, s));
    RW_CUDA_CHECK(cudaEventSynchronize(stop));
    float ms = 0;
    RW_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
    return static_cast<double>(ms) / 1e3;
  };
  run(2);  // warm-up: caches, cuBLAS heuristics, allocator
  int64_t reps = 1;
  while (run(reps) < opt.min_time / 4 && reps < (int64_t{1} << 20)) reps *= 4;
  double t = run(reps);
  reps = std::max<int64_t>(1, static_cast<int64_t>(static_cast<double>(reps) * opt.min_time / t));
  double best = 1e30;
  for (int64_t i = 0; i < opt.trials; ++i)
    best = std::min(best, run(reps) / static_cast<double>(reps));
  RW_CUDA_CHECK(cudaEventDestroy(start));
  RW_CUDA_CHECK(cudaEventDestroy(stop));
  return best;
}

struct MatmulCase {
  std::string name;
  int64_t batch, M, K, N;
};

cudaDataType_t cuda_type(DType t) { return t == DType::bf16 ? CUDA_R_16BF : CUDA_R_32F; }

// One row: rw::matmul against cublasGemmStridedBatchedEx computing the same row-major product
// (as out^T = b^T a^T in cuBLAS's column-major terms).
std::vector<std::string> matmul_row(const MatmulCase& c, DType dtype, bool tf32,
                                    const CudaOpsOptions& opt, Generator& gen) {
  NoGradGuard no_grad;
  cuda::set_allow_tf32(tf32);
  Tensor a = randn({c.batch, c.M, c.K}, gen, {.device = kGpu}).to(dtype);
  Tensor b = randn({c.batch, c.K, c.N}, gen, {.device = kGpu}).to(dtype);
  Tensor direct = empty({c.batch, c.M, c.N}, {.dtype = dtype, .device = kGpu});
  cublasHandle_t h = cuda::cublas(0);
  const float alpha = 1, beta = 0;
  cublasComputeType_t compute =
      dtype == DType::f32 && tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
  auto direct_call = [&] {
    RW_CUBLAS_CHECK(cublasGemmStridedBatchedEx(
        h, CUBLAS_OP_N, CUBLAS_OP_N, static_cast<int>(c.N), static_cast<int>(c.M),
        static_cast<int>(c.K), &alpha, b.data_ptr(), cuda_type(dtype), static_cast<int>(c.N),
        c.K * c.N, a.data_ptr(), cuda_type(dtype), static_cast<int>(c.K), c.M * c.K, &beta,
        direct.data_ptr(), cuda_type(dtype), static_cast<int>(c.N), c.M * c.N,
        static_cast<int>(c.batch), compute, CUBLAS_GEMM_DEFAULT));
  };
  auto rewind_call = [&] { Tensor out = matmul(a, b); };
  const double t_rw = time_per_call(rewind_call, opt);
  const double t_direct = time_per_call(direct_call, opt);
  // Same numbers from both paths, or the timing compares different work.
  Tensor diff = max(abs(sub(matmul(a, b).to(DType::f32), direct.to(DType::f32))));
  const double tol = (dtype == DType::bf16 || tf32 ? 5e-2 : 1e-3) * std::sqrt(double(c.K));
  RW_CHECK(diff.item() <= tol, "cuda-ops bench: {} ({}) results differ by {}", c.name, dtype,
           diff.item());
  cuda::set_allow_tf32(false);
  const double flops = 2.0 * double(c.batch) * double(c.M) * double(c.N) * double(c.K);
  std::string type = dtype == DType::bf16 ? "bf16" : (tf32 ? "f32 (TF32)" : "f32");
  return {c.name,
          type,
          fmt::format("{} x {}x{} @ {}x{}", c.batch, c.M, c.K, c.K, c.N),
          fmt::format("{:.1f}", flops / t_rw / 1e12),
          fmt::format("{:.1f}", flops / t_direct / 1e12),
          fmt::format("{:.3f}", t_direct / t_rw)};
}

Table matmul_table(const CudaOpsOptions& opt) {
  Generator gen(0);
  std::vector<MatmulCase> cases;
  for (int64_t s : opt.sizes) cases.push_back({fmt::format("square {}", s), 1, s, s, s});
  // Chunked attention: 64 queries against their own and the previous chunk (128 keys), d_head 64.
  cases.push_back({"attention q @ k^T", opt.batch, 64, 64, 128});
  cases.push_back({"attention p @ v", opt.batch, 64, 128, 64});
  Table t;
  t.title = fmt::format("matmul on {}: rw::matmul vs cublasGemmStridedBatchedEx (TFLOP/s)", kGpu);
  t.columns = {"case", "dtype", "shape", "rewind", "cuBLAS", "rewind / cuBLAS"};
  for (const MatmulCase& c : cases) {
    for (auto [dtype, tf32] : {std::pair{DType::f32, false}, std::pair{DType::f32, true},
                               std::pair{DType::bf16, false}}) {
      std::fprintf(stderr, "cuda-ops: matmul %s %s ...\n", c.name.c_str(),
                   dtype_name(dtype).data());
      t.rows.push_back(matmul_row(c, dtype, tf32, opt, gen));
    }
  }
  t.notes = {
      "rewind's time includes allocating the output from its caching allocator and the "
      "op layer's checks; cuBLAS writes into a preallocated buffer. Best of trials, CUDA "
      "events on the same stream."};
  return t;
}

Table bandwidth_table(const CudaOpsOptions& opt) {
  NoGradGuard no_grad;
  Generator gen(1);
  Table t;
  t.title = fmt::format("memory-bound kernels on {} (GB/s of compulsory traffic)", kGpu);
  t.columns = {"op", "shape", "dtype", "time (us)", "GB/s"};
  auto row = [&](const std::string& op, const std::string& shape, DType dtype, double bytes,
                 const std::function<void()>& f) {
    std::fprintf(stderr, "cuda-ops: %s ...\n", op.c_str());
    double s = time_per_call(f, opt);
    t.rows.push_back({op, shape, std::string(dtype_name(dtype)), fmt::format("{:.1f}", s * 1e6),
                      fmt::format("{:.0f}", bytes / s / 1e9)});
  };
  const int64_t n = int64_t{1} << 26;
  for (DType d : {DType::f32, DType::bf16}) {
    Tensor x = randn({n}, gen, {.device = kGpu}).to(d), y = randn({n}, gen, {.device = kGpu}).to(d);
    double e = double(dtype_size(d));
    row("add", "[2^26]", d, 3 * e * double(n), [&] { Tensor z = add(x, y); });
    Tensor rows = x.reshape({n / 4096, 4096});
    row("softmax (last dim)", "[16384, 4096]", d, 2 * e * double(n),
        [&] { Tensor z = softmax(rows, -1); });
    Tensor w = ones({4096}, {.dtype = d, .device = kGpu}), bias = zeros_like(w);
    row("layer_norm", "[16384, 4096]", d, 2 * e * double(n),
        [&] { Tensor z = layer_norm(rows, w, bias); });
    row("sum (last dim)", "[16384, 4096]", d, e * double(n), [&] { Tensor z = sum(rows, {-1}); });
  }
  {
    Tensor x = randn({32768, 64}, gen, {.device = kGpu});
    Tensor perm = argsort(randn({32768}, gen, {.device = kGpu}), 0);
    row("index_select (row permutation)", "[32768, 64]", DType::f32, 2.0 * 4 * 32768 * 64,
        [&] { Tensor z = index_select(x, 0, perm); });
    Tensor keys = randint(0, 1 << 20, {8, 65536}, gen, {.dtype = DType::i64, .device = kGpu});
    row("argsort (8 x 65536 i64 keys)", "[8, 65536]", DType::i64, 2.0 * 8 * 8 * 65536,
        [&] { Tensor z = argsort(keys, 1); });
  }
  return t;
}

RunFn setup(CLI::App& cmd) {
  auto opt = std::make_shared<CudaOpsOptions>();
  cmd.add_option("--sizes", opt->sizes, "square matmul sizes")
      ->delimiter(',')
      ->capture_default_str();
  cmd.add_option("--batch", opt->batch, "batch of the attention-shaped matmuls")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd.add_option("--trials", opt->trials, "timed trials per row (the best counts)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd.add_option("--min-time", opt->min_time, "seconds per timed trial")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd.add_flag("--skip-matmul", opt->skip_matmul, "skip the matmul table");
  cmd.add_flag("--skip-bandwidth", opt->skip_bandwidth, "skip the bandwidth table");
  return [opt] {
    RW_CHECK(cuda_device_count() > 0, "rewind-bench cuda-ops: no CUDA device visible");
    std::vector<Table> tables;
    if (!opt->skip_matmul) tables.push_back(matmul_table(*opt));
    if (!opt->skip_bandwidth) tables.push_back(bandwidth_table(*opt));
    return tables;
  };
}

const bool registered = register_subcommand(
    {"cuda-ops", "GPU: matmul against cuBLAS, and the bandwidth of memory-bound kernels", setup});

}  // namespace
}  // namespace rw::bench
