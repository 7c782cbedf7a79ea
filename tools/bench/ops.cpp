// `rewind-bench ops`: (a) GFLOP/s of rw::matmul next to a direct dnnl_sgemm call on the same data
// in the same process, for square sizes and the batched shapes of chunked (LSH/local) attention;
// (b) the fixed cost of a tiny op (add of two 1-element tensors), with and without the tape.
#include <oneapi/dnnl/dnnl.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>

#include <fmt/format.h>

#include "core/ops.h"
#include "registry.h"

namespace rw::bench {
namespace {

struct OpsOptions {
  std::vector<int64_t> sizes = {256, 512, 1024, 2048};
  int64_t batch = 512;     // attention chunks (batch * heads * chunks)
  double min_time = 0.06;  // seconds per timed trial
  int64_t trials = 7;      // best of
  int64_t tiny_calls = 100000;
  bool skip_matmul = false;
  bool skip_overhead = false;
};

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

double time_calls(const std::function<void()>& f, int64_t reps) {
  auto t0 = Clock::now();
  for (int64_t i = 0; i < reps; ++i) f();
  return seconds_since(t0);
}

// Enough repetitions for one trial to take about `min_time` (measured after a warm-up call, which
// also builds and caches the primitive).
int64_t calibrate(const std::function<void()>& f, double min_time) {
  f();
  int64_t reps = 1;
  for (;;) {
    double t = time_calls(f, reps);
    if (t >= min_time / 4 || reps >= (int64_t{1} << 30)) {
      return std::max<int64_t>(1, static_cast<int64_t>(static_cast<double>(reps) * min_time / t));
    }
    reps *= 4;
  }
}

struct MatmulCase {
  std::string name;
  int64_t batch, M, K, N;
  bool b_transposed;  // b is the transposed view of a [batch, N, K] tensor (q @ k^T)
};

struct MatmulResult {
  double rw_gflops, dnnl_gflops;
  int64_t reps;
};

MatmulResult run_matmul_case(const MatmulCase& c, const OpsOptions& opt, Generator& gen) {
  NoGradGuard no_grad;
  const bool batched = c.batch > 1;
  Shape a_shape = batched ? Shape{c.batch, c.M, c.K} : Shape{c.M, c.K};
  Shape b_store = c.b_transposed ? Shape{c.batch, c.N, c.K} : Shape{c.batch, c.K, c.N};
  if (!batched) b_store.erase(b_store.begin());
  Tensor a = rand(a_shape, gen);
  Tensor b_storage = rand(b_store, gen);
  Tensor b = c.b_transposed ? b_storage.mT() : b_storage;
  Tensor direct_out = empty(batched ? Shape{c.batch, c.M, c.N} : Shape{c.M, c.N});
  const float* pa = a.data<float>();
  const float* pb = b_storage.data<float>();
  float* pc = direct_out.data<float>();

  auto rewind_call = [&] { Tensor out = matmul(a, b); };
  // dnnl_sgemm is row-major; one call per batch element (it has no batched form).
  auto direct_call = [&] {
    const char tb = c.b_transposed ? 'T' : 'N';
    const int64_t ldb = c.b_transposed ? c.K : c.N;
    for (int64_t i = 0; i < c.batch; ++i) {
      dnnl_sgemm('N', tb, c.M, c.N, c.K, 1.0f, pa + i * c.M * c.K, c.K, pb + i * c.K * c.N, ldb,
                 0.0f, pc + i * c.M * c.N, c.N);
    }
  };
  const double flops = 2.0 * static_cast<double>(c.batch * c.M * c.N) * static_cast<double>(c.K);
  const int64_t reps = calibrate(rewind_call, opt.min_time);
  calibrate(direct_call, opt.min_time);  // warm-up
  double best_rw = 1e30, best_direct = 1e30;
  for (int64_t t = 0; t < opt.trials; ++t) {  // interleaved, so load spikes hit both alike
    best_rw = std::min(best_rw, time_calls(rewind_call, reps));
    best_direct = std::min(best_direct, time_calls(direct_call, reps));
  }
  // Same numbers from both paths (a gross error here would make the timing meaningless).
  Tensor check = matmul(a, b);
  direct_call();
  const double diff = max(abs(sub(check, direct_out))).item();
  RW_CHECK(diff < 1e-3 * static_cast<double>(c.K), "ops bench: {} results differ by {}", c.name,
           diff);
  const double n = static_cast<double>(reps);
  return {flops * n / best_rw / 1e9, flops * n / best_direct / 1e9, reps};
}

Table matmul_table(const OpsOptions& opt) {
  Generator gen(0);
  std::vector<MatmulCase> cases;
  for (int64_t s : opt.sizes) cases.push_back({fmt::format("square {}", s), 1, s, s, s, false});
  const int64_t B = opt.batch;
  // Chunked attention (LSH or local): chunks of 64 queries attend to their own and the previous
  // chunk (128 keys) with d_head 64; the batch is batch * heads * chunks (* hash rounds).
  cases.push_back({"attention q @ k^T", B, 64, 64, 128, true});
  cases.push_back({"attention p @ v", B, 64, 128, 64, false});
  cases.push_back({"batched, contiguous b", B, 64, 64, 128, false});
  cases.push_back({"batched, the issue's 64x128x128", B, 64, 128, 128, false});

  Table t;
  t.title = "matmul, f32: rw::matmul vs direct dnnl_sgemm (GFLOP/s, higher is better)";
  t.columns = {"case", "batch", "M x K @ K x N", "rewind", "dnnl_sgemm", "ratio", "reps/trial"};
  for (const MatmulCase& c : cases) {
    std::fprintf(stderr, "ops: matmul %s ...\n", c.name.c_str());
    MatmulResult r = run_matmul_case(c, opt, gen);
    t.rows.push_back({c.name, fmt::format("{}", c.batch),
                      fmt::format("{}x{} @ {}x{}{}", c.M, c.K, c.K, c.N,
                                  c.b_transposed ? " (b = k^T view)" : ""),
                      fmt::format("{:.1f}", r.rw_gflops), fmt::format("{:.1f}", r.dnnl_gflops),
                      fmt::format("{:.2f}", r.rw_gflops / r.dnnl_gflops),
                      fmt::format("{}", r.reps)});
  }
  t.notes = {
      fmt::format("Best of {} trials of about {} s each, interleaved. rewind's time includes "
                  "allocating the output (from the caching allocator); dnnl_sgemm writes into a "
                  "preallocated buffer. Batched rows call dnnl_sgemm once per batch element.",
                  opt.trials, opt.min_time)};
  return t;
}

Table overhead_table(const OpsOptions& opt) {
  Table t;
  t.title = "per-op overhead (microseconds per call, lower is better)";
  t.columns = {"op", "mode", "calls", "us/call"};
  auto row = [&](const std::string& op, const std::string& mode, const std::function<void()>& f) {
    std::fprintf(stderr, "ops: overhead %s (%s) ...\n", op.c_str(), mode.c_str());
    f();
    double best = 1e30;
    for (int64_t trial = 0; trial < opt.trials; ++trial) {
      best = std::min(best, time_calls(f, opt.tiny_calls));
    }
    t.rows.push_back({op, mode, fmt::format("{}", opt.tiny_calls),
                      fmt::format("{:.3f}", best / static_cast<double>(opt.tiny_calls) * 1e6)});
  };
  {
    Tensor a = full({1}, 1.0), b = full({1}, 2.0);
    a.requires_grad_();
    b.requires_grad_();
    // Each result dies at once; its node then has no live output and the tape's periodic sweep
    // drops it, so the tape stays short however many calls run.
    row("add [1] + [1]", "requires_grad, tape recording", [&] { Tensor c = add(a, b); });
  }
  {
    Tensor a = full({1}, 1.0), b = full({1}, 2.0);
    row("add [1] + [1]", "no grad", [&] { Tensor c = add(a, b); });
  }
  {
    Tensor a = full({8, 8}, 1.0), b = full({8, 8}, 2.0);
    row("matmul [8x8] @ [8x8]", "no grad (dnnl_sgemm path)", [&] { Tensor c = matmul(a, b); });
  }
  {
    Tensor a = full({4, 8, 8}, 1.0), b = full({4, 8, 8}, 2.0);
    row("matmul [4x8x8] @ [4x8x8]", "no grad (cached matmul primitive)",
        [&] { Tensor c = matmul(a, b); });
  }
  t.notes = {fmt::format("Best of {} runs of {} calls each.", opt.trials, opt.tiny_calls)};
  return t;
}

RunFn setup(CLI::App& cmd) {
  auto opt = std::make_shared<OpsOptions>();
  cmd.add_option("--sizes", opt->sizes, "square matmul sizes (e.g. --sizes 256,1024)")
      ->delimiter(',')
      ->capture_default_str();
  cmd.add_option("--batch", opt->batch, "batch of the attention-shaped matmuls")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd.add_option("--min-time", opt->min_time, "seconds per timed trial")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd.add_option("--trials", opt->trials, "timed trials per row (the best counts)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd.add_option("--tiny-calls", opt->tiny_calls, "calls per overhead trial")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd.add_flag("--skip-matmul", opt->skip_matmul, "skip the matmul table");
  cmd.add_flag("--skip-overhead", opt->skip_overhead, "skip the overhead table");
  return [opt] {
    std::vector<Table> tables;
    if (!opt->skip_matmul) tables.push_back(matmul_table(*opt));
    if (!opt->skip_overhead) tables.push_back(overhead_table(*opt));
    return tables;
  };
}

const bool registered = register_subcommand(
    {"ops", "matmul GFLOP/s against dnnl_sgemm, and the per-op overhead of a tiny op", setup});

}  // namespace
}  // namespace rw::bench
