#include "common/attention_timing.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "autograd/tape.h"
#include "core/allocator.h"
#include "core/device_sync.h"
#include "core/error.h"
#include "core/generator_scope.h"
#include "core/ops.h"
#include "models/reformer/lsh_self_attention.h"
#include "nn/attention.h"

namespace rw::tools {

std::shared_ptr<nn::Module> make_attention_layer(const AttentionLayerSpec& spec) {
  Generator init(1);
  std::shared_ptr<nn::Module> layer;
  if (spec.kind == "full") {
    layer = std::make_shared<nn::MultiHeadAttention>(
        spec.d_model, spec.heads,
        nn::MultiHeadAttentionOptions{.causal = spec.causal, .shared_qk = true, .bias = false},
        init);
  } else {
    RW_CHECK(spec.kind == "lsh", "make_attention_layer: unknown kind '{}' (full or lsh)",
             spec.kind);
    layer = std::make_shared<reformer::LSHSelfAttention>(
        spec.d_model, spec.heads,
        reformer::LSHSelfAttentionOptions{
            .lsh = {.chunk_len = spec.chunk, .n_hashes = spec.n_hashes, .causal = spec.causal}},
        init);
  }
  // Initialised on the CPU and moved, so every device starts from the same weights.
  if (!spec.device.is_cpu()) layer->to(spec.device);
  return layer;
}

AttentionTiming time_attention(nn::Module& layer, const AttentionRun& run) {
  const TensorOptions on_device{.device = run.device};
  Generator data(2);
  Tensor x = randn({run.batch, run.length, run.d_model}, data, on_device).requires_grad_();
  Generator cot_gen(3);
  Tensor cotangent = randn({run.batch, run.length, run.d_model}, cot_gen, on_device);
  AttentionTiming timing{.seconds = 1e300, .peak = 0};
  Generator layer_rng(4);
  GeneratorScope scope(layer_rng);  // LSH rotations are drawn from the current generator
  auto run_once = [&] {
    layer.zero_grad();
    x.zero_grad();
    current_tape().sweep();
    // The zeroing above is queued on a GPU: it must not count.
    synchronize(run.device);
    const int64_t before = memory_stats(run.device).allocated_bytes;
    reset_peak_memory(run.device);
    const auto t0 = std::chrono::steady_clock::now();
    {
      Tensor y = layer.forward(x);
      backward(y, cotangent);
      // A GPU queues its kernels: wait for them before reading the clock.
      synchronize(run.device);
    }
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    timing.seconds = std::min(timing.seconds, s);
    timing.peak = std::max(timing.peak, memory_stats(run.device).peak_allocated_bytes - before);
  };
  run_once();
  const double first = timing.seconds;
  const bool warm_up = first < 1.0;
  if (warm_up) timing.seconds = 1e300;
  for (int64_t rep = warm_up ? 0 : 1; rep < run.reps; ++rep) run_once();
  return timing;
}

double full_attention_score_bytes(int64_t batch, int64_t heads, int64_t length) {
  const double l = static_cast<double>(length);
  return 3.0 * static_cast<double>(batch) * static_cast<double>(heads) * l * l * 4.0;
}

double fitted_exponent(const std::vector<std::pair<double, double>>& points) {
  RW_CHECK(points.size() >= 2, "fitted_exponent: needs at least 2 points, got {}", points.size());
  const auto n = static_cast<double>(points.size());
  double sx = 0, sy = 0, sxx = 0, sxy = 0;
  for (auto [px, py] : points) {
    RW_CHECK(px > 0 && py > 0, "fitted_exponent: values must be positive, got ({}, {})", px, py);
    const double x = std::log(px), y = std::log(py);
    sx += x;
    sy += y;
    sxx += x * x;
    sxy += x * y;
  }
  const double denominator = n * sxx - sx * sx;
  RW_CHECK(denominator > 0, "fitted_exponent: all {} points have the same x", points.size());
  return (n * sxy - sx * sy) / denominator;
}

}  // namespace rw::tools
