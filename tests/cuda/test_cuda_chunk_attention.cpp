// The fused CUDA chunk-attention kernel (models/reformer/chunk_attention_cuda.h) against the op
// path on the CPU (models/reformer/chunk_attention.cpp, the reference), forward and gradients of
// q, k and v, over the plan's features: rounds, causal, windows, padding, buckets, duplicate
// counts, dropout, several batch-heads and head sizes, bf16/f16 inputs; and a whole lsh_attention
// call on CUDA against the CPU. The shape rules (which calls fall back to the op path, and why)
// are host logic and are checked without a GPU.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "autograd/tape.h"
#include "core/ops.h"
#include "cuda/cuda_test_util.h"
#include "models/reformer/chunk_attention.h"
#include "models/reformer/chunk_attention_cuda.h"
#include "models/reformer/lsh_attention.h"
#include "models/reformer/lsh_hashing.h"
#include "test_util.h"

namespace rw::reformer {
namespace {

using test::contains;

constexpr Device kGpu = Device::cuda(0);
constexpr Device kCpu = Device::cpu();

struct PlanSpec {
  int64_t batch_heads = 2, length = 128, n_hashes = 1, chunk_len = 64;
  int64_t chunks_before = 1, chunks_after = 0;
  bool causal = false, count_duplicates = false, attend_across_buckets = true;
  int64_t padded = 0;  // the last `padded` tokens of every batch-head are padding
  int64_t n_buckets = 4;
  double dropout_p = 0;
  uint64_t seed = 1;
};

// A plan as lsh_attention builds it (models/reformer/lsh_attention.cpp), from random buckets: per
// round a stable sort of the tokens by (bucket, position), padding in an extra last bucket; slot
// and token buckets unique across rounds (round r's ids in [r (nb + 1), (r + 1) (nb + 1))).
std::shared_ptr<ChunkAttentionPlan> random_plan(const PlanSpec& s) {
  const int64_t BH = s.batch_heads, Lp = s.length, n = s.n_hashes, c = s.chunk_len;
  const int64_t S = n * Lp, nb = s.n_buckets;
  Generator gen(s.seed);
  const std::vector<double> u = rand({BH, n, Lp}, gen, {.dtype = DType::f64}).to_vector<double>();
  std::vector<int64_t> perm(BH * S), inv(BH * n * Lp), slot_bucket(BH * S);
  std::vector<int64_t> token_chunk(BH * Lp * n), token_bucket(BH * Lp * n);
  std::vector<uint8_t> valid(BH * Lp);
  for (int64_t bh = 0; bh < BH; ++bh) {
    for (int64_t t = 0; t < Lp; ++t) valid[bh * Lp + t] = t < Lp - s.padded ? 1 : 0;
    for (int64_t r = 0; r < n; ++r) {
      std::vector<int64_t> bucket(Lp), order(Lp);
      for (int64_t t = 0; t < Lp; ++t) {
        const auto drawn = static_cast<int64_t>(u[(bh * n + r) * Lp + t] * static_cast<double>(nb));
        bucket[t] = valid[bh * Lp + t] != 0 ? std::min(drawn, nb - 1) : nb;
      }
      std::iota(order.begin(), order.end(), 0);
      std::stable_sort(order.begin(), order.end(),
                       [&](int64_t a, int64_t b) { return bucket[a] < bucket[b]; });
      for (int64_t slot = 0; slot < Lp; ++slot) {
        const int64_t tok = order[slot];
        perm[bh * S + r * Lp + slot] = tok;
        inv[(bh * n + r) * Lp + tok] = slot;
        slot_bucket[bh * S + r * Lp + slot] = bucket[tok] + r * (nb + 1);
        token_chunk[(bh * Lp + tok) * n + r] = (r * Lp + slot) / c;
        token_bucket[(bh * Lp + tok) * n + r] = bucket[tok] + r * (nb + 1);
      }
    }
  }
  auto p = std::make_shared<ChunkAttentionPlan>();
  p->batch_heads = BH;
  p->length = Lp;
  p->n_hashes = n;
  p->chunk_len = c;
  p->chunks_before = s.chunks_before;
  p->chunks_after = s.chunks_after;
  p->causal = s.causal;
  p->count_duplicates = s.count_duplicates;
  p->attend_across_buckets = s.attend_across_buckets;
  p->dropout_p = s.dropout_p;
  p->dropout_state = {.seed = s.seed + 100, .stream = 3, .counter = 7};
  p->perm = from_vector(perm, Shape{BH, S});
  p->inv = from_vector(inv, Shape{BH, n, Lp});
  p->valid = from_vector(valid, Shape{BH * Lp}).to(DType::boolean);
  p->slot_bucket = from_vector(slot_bucket, Shape{BH, S});
  p->token_chunk = from_vector(token_chunk, Shape{BH * Lp, n});
  p->token_bucket = from_vector(token_bucket, Shape{BH * Lp, n});
  return p;
}

std::shared_ptr<ChunkAttentionPlan> plan_on(const ChunkAttentionPlan& p, Device device) {
  auto moved = std::make_shared<ChunkAttentionPlan>(p);
  for (Tensor* t : {&moved->perm, &moved->inv, &moved->valid, &moved->slot_bucket,
                    &moved->token_chunk, &moved->token_bucket}) {
    *t = t->to(device);
  }
  return moved;
}

struct Inputs {
  Tensor q, k, v, dout;  // f32 on the CPU
};

// Queries of scale 1/sqrt(d) against unit keys (as lsh_attention passes them), normal values.
Inputs random_inputs(int64_t BH, int64_t Lp, int64_t d, uint64_t seed) {
  Generator gen(seed);
  Inputs in;
  in.q = mul(randn({BH, Lp, d}, gen), 1 / std::sqrt(static_cast<double>(d)));
  in.k = div(randn({BH, Lp, d}, gen), std::sqrt(static_cast<double>(d)));
  in.v = randn({BH, Lp, d}, gen);
  in.dout = randn({BH, Lp, d}, gen);
  return in;
}

struct Result {
  Tensor y, dq, dk, dv;  // f32 on the CPU
};

// chunk_attention of the inputs converted to (device, dtype), its gradients for dout.
Result run(const std::shared_ptr<ChunkAttentionPlan>& plan, const Inputs& in, Device device,
           DType dtype) {
  auto leaf = [&](const Tensor& t) { return t.to(dtype).to(device).detach().requires_grad_(); };
  Tensor q = leaf(in.q), k = leaf(in.k), v = leaf(in.v);
  Tensor y = chunk_attention(q, k, v, plan);
  backward(y, in.dout.to(dtype).to(device));
  auto host = [](const Tensor& t) { return t.detach().to(kCpu).to(DType::f32); };
  return {host(y), host(q.grad()), host(k.grad()), host(v.grad())};
}

// The op path on the CPU, in f32, of the inputs as the device sees them (rounded to dtype).
Result reference(const ChunkAttentionPlan& plan, const Inputs& in, DType dtype) {
  Inputs rounded{in.q.to(dtype).to(DType::f32), in.k.to(dtype).to(DType::f32),
                 in.v.to(dtype).to(DType::f32), in.dout.to(dtype).to(DType::f32)};
  ChunkAttentionKernelScope ops(ChunkAttentionKernel::ops);
  return run(plan_on(plan, kCpu), rounded, kCpu, DType::f32);
}

double max_abs(const Tensor& t) { return max(abs(t)).item<double>(); }
double max_abs_diff(const Tensor& a, const Tensor& b) { return max_abs(sub(a, b)); }

// got equals want within tol relative to want's largest magnitude.
void check_close_to(const char* what, const Tensor& got, const Tensor& want, double tol) {
  REQUIRE(got.shape() == want.shape());
  const double diff = max_abs_diff(got, want), scale = std::max(1.0, max_abs(want));
  INFO(what, ": max |got - want| = ", diff, ", max |want| = ", scale);
  CHECK(std::isfinite(diff));
  CHECK(diff <= tol * scale);
}

void check_against_ops(const PlanSpec& spec, int64_t d, DType dtype, double tol) {
  INFO("BH ", spec.batch_heads, " Lp ", spec.length, " n_hashes ", spec.n_hashes, " chunk_len ",
       spec.chunk_len, " before ", spec.chunks_before, " after ", spec.chunks_after, " causal ",
       spec.causal, " duplicates ", spec.count_duplicates, " across ", spec.attend_across_buckets,
       " padded ", spec.padded, " dropout ", spec.dropout_p, " d ", d, " dtype ", dtype);
  const auto plan = random_plan(spec);
  const Inputs in = random_inputs(spec.batch_heads, spec.length, d, spec.seed + 17);
  const auto gpu_plan = plan_on(*plan, kGpu);
  // The kernel really runs (a fallback to the op path would make the comparison vacuous).
  const Tensor q_gpu = in.q.to(dtype).to(kGpu);
  const std::string reason = cuda_kernel::unsupported_reason(*gpu_plan, q_gpu);
  if (reason.find("shared memory") != std::string::npos) {  // e.g. d_head 128 on an A100
    MESSAGE("skipped on this GPU: ", reason);
    return;
  }
  REQUIRE(reason == "");
  const Result got = run(gpu_plan, in, kGpu, dtype);
  const Result want = reference(*plan, in, dtype);
  check_close_to("y", got.y, want.y, tol);
  check_close_to("dq", got.dq, want.dq, tol);
  check_close_to("dk", got.dk, want.dk, tol);
  check_close_to("dv", got.dv, want.dv, tol);
  // Not vacuous: the gradients are not all zero.
  CHECK(max_abs(want.dq) > 1e-3);
  CHECK(max_abs(want.dk) > 1e-3);
}

constexpr double kF32Tol = 2e-4;

TEST_CASE("cuda chunk attention kernel equals the op path: rounds, causal, windows") {
  RW_REQUIRE_GPU();
  const std::vector<PlanSpec> specs = {
      {.batch_heads = 1, .length = 128, .n_hashes = 1},
      {.batch_heads = 3, .length = 256, .n_hashes = 4, .causal = true, .seed = 2},
      {.batch_heads = 2,
       .length = 192,
       .n_hashes = 2,
       .chunks_before = 1,
       .chunks_after = 1,
       .seed = 3},
      {.batch_heads = 2,
       .length = 256,
       .n_hashes = 2,
       .chunks_before = 2,
       .causal = true,
       .seed = 4},
      {.batch_heads = 4,
       .length = 128,
       .n_hashes = 3,
       .chunks_before = 0,
       .chunks_after = 1,
       .seed = 5},
      // One chunk in the whole ticker: the window wraps onto the query chunk itself.
      {.batch_heads = 2, .length = 64, .n_hashes = 1, .seed = 6},
  };
  for (const PlanSpec& s : specs) check_against_ops(s, 64, DType::f32, kF32Tol);
}

TEST_CASE("cuda chunk attention kernel equals the op path: padding, buckets, duplicate counts") {
  RW_REQUIRE_GPU();
  const std::vector<PlanSpec> specs = {
      {.batch_heads = 2, .length = 192, .n_hashes = 2, .padded = 37, .seed = 11},
      {.batch_heads = 3, .length = 128, .n_hashes = 4, .causal = true, .padded = 70, .seed = 12},
      {.batch_heads = 2, .length = 256, .n_hashes = 2, .attend_across_buckets = false, .seed = 13},
      {.batch_heads = 2, .length = 256, .n_hashes = 4, .count_duplicates = true, .seed = 14},
      {.batch_heads = 2,
       .length = 192,
       .n_hashes = 3,
       .chunks_after = 1,
       .causal = true,
       .count_duplicates = true,
       .attend_across_buckets = false,
       .padded = 20,
       .seed = 15},
      // 8 real tokens: padding sorts last in every round, so the queries of the last two chunks
      // see padding only (no attended key: zero output, no gradient).
      {.batch_heads = 2, .length = 256, .n_hashes = 2, .padded = 248, .seed = 16},
      // A window of 4 chunks in a ticker of 2: the same key chunk several times per window.
      {.batch_heads = 2,
       .length = 128,
       .n_hashes = 1,
       .chunks_before = 2,
       .chunks_after = 1,
       .count_duplicates = true,
       .seed = 17},
  };
  for (const PlanSpec& s : specs) check_against_ops(s, 64, DType::f32, kF32Tol);
}

TEST_CASE(
    "cuda chunk attention kernel equals the op path for d_head 32, 128 and 40, chunk_len 32 "
    "and 128") {
  RW_REQUIRE_GPU();
  check_against_ops({.batch_heads = 6, .length = 128, .n_hashes = 2, .causal = true, .seed = 21},
                    32, DType::f32, kF32Tol);
  check_against_ops({.batch_heads = 2, .length = 256, .n_hashes = 4, .padded = 9, .seed = 22}, 128,
                    DType::f32, kF32Tol);
  // d_head 40 is padded to 64 in shared memory.
  check_against_ops(
      {.batch_heads = 3, .length = 128, .n_hashes = 2, .count_duplicates = true, .seed = 23}, 40,
      DType::f32, kF32Tol);
  check_against_ops({.batch_heads = 2,
                     .length = 160,
                     .n_hashes = 2,
                     .chunk_len = 32,
                     .chunks_after = 1,
                     .seed = 24},
                    64, DType::f32, kF32Tol);
  check_against_ops({.batch_heads = 2,
                     .length = 384,
                     .n_hashes = 2,
                     .chunk_len = 128,
                     .causal = true,
                     .seed = 25},
                    32, DType::f32, kF32Tol);
}

TEST_CASE("cuda chunk attention kernel with dropout drops the op path's probabilities") {
  RW_REQUIRE_GPU();
  // Small: one block of chunks per round. Large: 8 batch-heads of 64 x 192 scores per chunk put
  // 10 chunks in a block (kChunkBlockElements), so a round of 24 chunks has blocks of 10, 10 and
  // 4, each with its own Philox counter.
  check_against_ops({.batch_heads = 2,
                     .length = 192,
                     .n_hashes = 2,
                     .causal = true,
                     .dropout_p = 0.2,
                     .seed = 31},
                    64, DType::f32, kF32Tol);
  check_against_ops({.batch_heads = 8,
                     .length = 1536,
                     .n_hashes = 2,
                     .chunks_before = 1,
                     .chunks_after = 1,
                     .dropout_p = 0.3,
                     .seed = 32},
                    32, DType::f32, kF32Tol);
  // Dropout with every other mask, in f32 and in bf16.
  const PlanSpec masked{.batch_heads = 2,
                        .length = 192,
                        .n_hashes = 3,
                        .chunk_len = 32,
                        .count_duplicates = true,
                        .attend_across_buckets = false,
                        .padded = 5,
                        .dropout_p = 0.25,
                        .seed = 33};
  check_against_ops(masked, 64, DType::f32, kF32Tol);
  check_against_ops(masked, 64, DType::bf16, 3e-2);
}

TEST_CASE("cuda chunk attention kernel takes bf16 and f16 inputs, computing in f32") {
  RW_REQUIRE_GPU();
  const PlanSpec spec{.batch_heads = 3,
                      .length = 192,
                      .n_hashes = 2,
                      .causal = true,
                      .count_duplicates = true,
                      .padded = 11,
                      .seed = 41};
  // The reference sees the same rounded inputs; what is left is the rounding of the outputs and
  // gradients to 8 (bf16) or 11 (f16) significant bits.
  check_against_ops(spec, 64, DType::bf16, 3e-2);
  check_against_ops(spec, 64, DType::f16, 5e-3);
  check_against_ops({.batch_heads = 2, .length = 128, .n_hashes = 4, .seed = 42}, 128, DType::bf16,
                    3e-2);
}

TEST_CASE("cuda chunk attention: shapes the kernel does not take run on the op path") {
  RW_REQUIRE_GPU();
  // chunk_len 16 is not compiled: the call falls back to the op path on the GPU, still correct.
  const PlanSpec spec{.batch_heads = 2, .length = 64, .n_hashes = 2, .chunk_len = 16, .seed = 51};
  const auto plan = random_plan(spec);
  const auto gpu_plan = plan_on(*plan, kGpu);
  const Inputs in = random_inputs(2, 64, 32, 52);
  CHECK(contains(cuda_kernel::unsupported_reason(*gpu_plan, in.q.to(kGpu)), "chunk_len 16"));
  const Result got = run(gpu_plan, in, kGpu, DType::f32);
  const Result want = reference(*plan, in, DType::f32);
  check_close_to("y", got.y, want.y, kF32Tol);
  check_close_to("dq", got.dq, want.dq, kF32Tol);
  // f64 is not a kernel dtype.
  const auto plan64 = plan_on(*random_plan({.seed = 53}), kGpu);
  CHECK(contains(cuda_kernel::unsupported_reason(
                     *plan64, zeros({2, 128, 64}, {.dtype = DType::f64, .device = kGpu})),
                 "dtype f64"));
}

TEST_CASE("cuda chunk attention kernel: ChunkAttentionKernel::ops forces the op path") {
  RW_REQUIRE_GPU();
  const PlanSpec spec{.batch_heads = 2, .length = 128, .n_hashes = 2, .seed = 61};
  const auto gpu_plan = plan_on(*random_plan(spec), kGpu);
  const Inputs in = random_inputs(2, 128, 64, 62);
  const Result fused = run(gpu_plan, in, kGpu, DType::f32);
  Result ops;
  {
    ChunkAttentionKernelScope scope(ChunkAttentionKernel::ops);
    ops = run(gpu_plan, in, kGpu, DType::f32);
  }
  check_close_to("y", fused.y, ops.y, kF32Tol);
  check_close_to("dk", fused.dk, ops.dk, kF32Tol);
}

TEST_CASE("lsh_attention with rotations on CUDA equals the CPU, with gradients") {
  RW_REQUIRE_GPU();
  const int64_t B = 2, H = 2, L = 300, d = 64;
  const LSHAttentionOptions o{
      .chunk_len = 64, .n_buckets = 8, .n_hashes = 2, .causal = true, .count_duplicates = true};
  Generator gen(71);
  const LSHRotations rot = random_lsh_rotations(H, d, o.n_hashes, o.n_buckets, gen);
  LSHRotations rot_gpu = rot;
  rot_gpu.first = rot.first.to(kGpu);
  if (rot.second.defined()) rot_gpu.second = rot.second.to(kGpu);
  const Tensor qk = randn({B, H, L, d}, gen), v = randn({B, H, L, d}, gen);
  const Tensor cot = randn({B, H, L, d}, gen);
  // A padding mask: the last 25 tokens of batch element 1.
  std::vector<uint8_t> real(B * L, 1);
  for (int64_t t = L - 25; t < L; ++t) real[L + t] = 0;
  const Tensor mask = from_vector(real, Shape{B, L}).to(DType::boolean);
  // Same buckets on both devices, or the comparison below would compare different attentions.
  REQUIRE(max_abs_diff(lsh_hash(qk.to(kGpu), rot_gpu).to(kCpu).to(DType::f64),
                       lsh_hash(qk, rot).to(DType::f64)) == 0);
  auto run_on = [&](Device device, const LSHRotations& r) {
    Tensor x = qk.to(device).detach().requires_grad_(), y = v.to(device).detach().requires_grad_();
    Tensor out = lsh_attention(x, y, r, o, mask.to(device));
    backward(out, cot.to(device));
    return std::vector<Tensor>{out.detach().to(kCpu), x.grad().to(kCpu), y.grad().to(kCpu)};
  };
  const std::vector<Tensor> got = run_on(kGpu, rot_gpu);
  const std::vector<Tensor> want = run_on(kCpu, rot);
  check_close_to("y", got[0], want[0], kF32Tol);
  check_close_to("dqk", got[1], want[1], kF32Tol);
  check_close_to("dv", got[2], want[2], kF32Tol);
}

// Host logic only: no GPU needed.
TEST_CASE("cuda chunk attention shape rules name what the kernel does not take") {
  const auto plan = random_plan({.batch_heads = 2, .length = 128, .n_hashes = 2});
  constexpr int64_t kH100 = 232448;  // cudaDevAttrMaxSharedMemoryPerBlockOptin on sm_90
  CHECK(cuda_kernel::shape_reason(*plan, 64, DType::f32, kH100) == "");
  CHECK(cuda_kernel::shape_reason(*plan, 128, DType::bf16, kH100) == "");
  CHECK(cuda_kernel::shape_reason(*plan, 1, DType::f16, kH100) == "");
  CHECK(contains(cuda_kernel::shape_reason(*plan, 64, DType::f64, kH100), "dtype f64"));
  CHECK(contains(cuda_kernel::shape_reason(*plan, 129, DType::f32, kH100),
                 "chunk_len 64 with d_head 129"));
  // 128-token chunks only with d_head up to 32 (the tiles of larger heads do not fit).
  auto wide = std::make_shared<ChunkAttentionPlan>(*plan);
  wide->chunk_len = 128;
  CHECK(cuda_kernel::shape_reason(*wide, 32, DType::f32, kH100) == "");
  CHECK(contains(cuda_kernel::shape_reason(*wide, 64, DType::f32, kH100),
                 "chunk_len 128 with d_head 64"));
  wide->chunk_len = 16;
  CHECK(contains(cuda_kernel::shape_reason(*wide, 32, DType::f32, kH100), "chunk_len 16"));
  // d_head 128 needs more than the 48 KB every GPU gives without opting in, and more than
  // sm_80's 163 KB in backward.
  const std::string small = cuda_kernel::shape_reason(*plan, 128, DType::f32, 48 * 1024);
  CHECK(contains(small, "bytes of shared memory per block, the GPU allows 49152"));
  CHECK(contains(cuda_kernel::shape_reason(*plan, 128, DType::f32, 166912), "shared memory"));
  CHECK(cuda_kernel::shape_reason(*plan, 64, DType::f32, 166912) == "");
}

}  // namespace
}  // namespace rw::reformer
