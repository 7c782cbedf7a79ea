// Mixed precision on the GPU: cuBLAS bf16/f16 products (f32 accumulation) against the CPU's, and
// a ReformerLM training step under bf16/f16 autocast on CUDA against the same step on the CPU
// (loss, f32 parameter gradients), with f16 masks that stay finite on padded causal batches.
#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <vector>

#include "autograd/tape.h"
#include "core/autocast.h"
#include "core/generator_scope.h"
#include "core/ops.h"
#include "cuda/cuda_test_util.h"
#include "models/reformer/reformer_lm.h"
#include "nn/grad_scaler.h"
#include "nn/sgd.h"
#include "test_util.h"

namespace rw {
namespace {

const Device kGpu = Device::cuda(0);

double max_rel(const Tensor& a, const Tensor& b) {
  const Tensor a64 = a.to(Device::cpu()).to(DType::f64), b64 = b.to(Device::cpu()).to(DType::f64);
  const double scale = std::max(max(abs(b64)).item(), 1e-30);
  return max(abs(sub(a64, b64))).item() / scale;
}

bool all_finite(const Tensor& t) {
  for (double x : t.to(Device::cpu()).to_vector<double>()) {
    if (!std::isfinite(x)) return false;
  }
  return true;
}

TEST_CASE("cuda autocast: bf16/f16 matmul and linear equal the CPU's within one rounding") {
  RW_REQUIRE_GPU();
  Generator gen(1);
  // K = 1024: a product accumulated in the half type would be off by far more than one rounding.
  const Tensor a = randn({4, 32, 1024}, gen), b = randn({1024, 48}, gen), bias = randn({48}, gen);
  const Tensor w = b.mT().contiguous();
  for (DType low : {DType::bf16, DType::f16}) {
    INFO(dtype_name(low));
    const double ulp = low == DType::bf16 ? 0x1p-7 : 0x1p-10;
    Tensor cpu, gpu, cpu_lin, gpu_lin;
    {
      AutocastScope autocast(low);
      cpu = matmul(a, b);
      gpu = matmul(a.to(kGpu), b.to(kGpu));
      cpu_lin = linear(a, w, bias);
      gpu_lin = linear(a.to(kGpu), w.to(kGpu), bias.to(kGpu));
    }
    CHECK(gpu.dtype() == low);
    CHECK(gpu.device() == kGpu);
    // Both are the f32-accumulated product of the same rounded operands, rounded once: they may
    // differ by the summation order only, i.e. at most one unit in the last place.
    CHECK(max_rel(gpu, cpu) <= ulp);
    CHECK(max_rel(gpu_lin, cpu_lin) <= ulp);
  }
}

reformer::ReformerConfig step_config(reformer::AttentionKind second) {
  reformer::ReformerConfig c;
  c.vocab_size = 64;
  c.d_model = 64;
  c.d_ff = 128;
  c.n_layers = 2;
  c.n_heads = 2;
  c.attention = {reformer::AttentionKind::lsh, second};
  c.chunk_len = 16;
  c.n_hashes = 2;
  c.n_buckets = 1;  // no bucket flips between devices: the same chunks everywhere
  c.max_len = 128;
  c.loss_chunk = 32;
  c.ff_chunk = 32;
  c.causal = true;
  return c;
}

struct Step {
  double loss = 0;
  std::vector<Tensor> grads;  // parameter order
};

Step run_step(reformer::ReformerLM& model, const Tensor& tokens, const Tensor& targets,
              const Tensor& padding, DType precision) {
  model.zero_grad();
  Generator rotations(3);
  GeneratorScope scope(rotations);
  AutocastScope autocast(precision);
  Tensor loss = model.loss(tokens, targets, padding);
  backward(loss);
  Step s{.loss = loss.item(), .grads = {}};
  for (const Tensor& p : model.parameters()) s.grads.push_back(p.grad());
  return s;
}

TEST_CASE("cuda autocast: a ReformerLM step in bf16/f16 matches the CPU's") {
  RW_REQUIRE_GPU();
  for (auto second : {reformer::AttentionKind::full, reformer::AttentionKind::local}) {
    const reformer::ReformerConfig config = step_config(second);
    Generator init(2);
    reformer::ReformerLM cpu_model(config, init);
    Generator init_again(2);
    auto gpu_model = std::make_shared<reformer::ReformerLM>(config, init_again);
    gpu_model->to(kGpu);
    Generator data(4);
    const Tensor tokens = randint(0, config.vocab_size, {2, 96}, data, {.dtype = DType::i64});
    const Tensor targets = randint(0, config.vocab_size, {2, 96}, data, {.dtype = DType::i64});
    std::vector<uint8_t> real(2 * 96, 1);
    for (int i = 96 + 40; i < 2 * 96; ++i) real[static_cast<std::size_t>(i)] = 0;
    const Tensor padding = from_vector<uint8_t>(real, Shape{2, 96}).to(DType::boolean);
    for (DType low : {DType::bf16, DType::f16}) {
      INFO(reformer::to_string(second), " ", dtype_name(low));
      const Step cpu = run_step(cpu_model, tokens, targets, padding, low);
      const Step gpu =
          run_step(*gpu_model, tokens.to(kGpu), targets.to(kGpu), padding.to(kGpu), low);
      CHECK(std::isfinite(gpu.loss));
      // The two devices round the same values in the same dtype; they differ by summation orders
      // (and the fused attention kernel's f32 scores against the CPU op path's half scores):
      // the bounds of tests/models/test_mixed_precision.cpp for half against f32.
      const double loss_tol = low == DType::bf16 ? 2e-4 : 2e-5;
      const double grad_tol = low == DType::bf16 ? 5e-2 : 7e-3;
      CHECK(std::abs(gpu.loss - cpu.loss) <= loss_tol * std::abs(cpu.loss));
      REQUIRE(gpu.grads.size() == cpu.grads.size());
      for (std::size_t i = 0; i < gpu.grads.size(); ++i) {
        INFO("parameter ", i);
        REQUIRE(gpu.grads[i].defined());
        CHECK(gpu.grads[i].dtype() == DType::f32);
        CHECK(all_finite(gpu.grads[i]));
        CHECK(max_rel(gpu.grads[i], cpu.grads[i]) <= grad_tol);
      }
    }
  }
}

TEST_CASE("cuda autocast: f16 training steps with a GradScaler stay finite and learn") {
  RW_REQUIRE_GPU();
  const reformer::ReformerConfig config = step_config(reformer::AttentionKind::lsh);
  Generator init(5);
  auto model = std::make_shared<reformer::ReformerLM>(config, init);
  model->to(kGpu);
  nn::SGD opt(model->named_parameters(), {.lr = 0.5});
  nn::GradScaler scaler;
  Generator data(6);
  // One repeated batch: the loss must fall.
  const Tensor tokens =
      randint(0, config.vocab_size, {2, 64}, data, {.dtype = DType::i64}).to(kGpu);
  std::vector<double> losses;
  for (int step = 0; step < 8; ++step) {
    opt.zero_grad();
    Generator rotations(7);
    GeneratorScope scope(rotations);
    {
      AutocastScope autocast(DType::f16);
      Tensor loss = model->loss(tokens, tokens);
      backward(scaler.scale(loss));
      losses.push_back(loss.item());
    }
    scaler.step(opt);
    scaler.update();
  }
  for (double l : losses) CHECK(std::isfinite(l));
  CHECK(losses.back() < losses.front());
  for (const Tensor& p : model->parameters()) CHECK(p.dtype() == DType::f32);
}

}  // namespace
}  // namespace rw
