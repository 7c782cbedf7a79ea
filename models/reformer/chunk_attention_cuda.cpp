#include "models/reformer/chunk_attention_cuda.h"

#include <fmt/format.h>

#include <algorithm>
#include <limits>

#include "core/error.h"
#include "core/ops.h"
#include "models/reformer/chunk_attention_blocks.h"

#ifdef REWIND_WITH_CUDA
#include "backends/cuda/cuda_context.h"
#include "backends/cuda/lsh_chunk_attention_kernels.h"
#endif

namespace rw::reformer::cuda_kernel {

#ifdef REWIND_WITH_CUDA
namespace {

using Plan = ChunkAttentionPlan;
constexpr int64_t kIntMax = std::numeric_limits<int32_t>::max();

// The plan's index tensors as contiguous device tensors (kept alive for the launches) and the
// kernels' parameters pointing into them.
struct Launch {
  Tensor perm, valid, slot_bucket, token_chunk, token_bucket;
  cuda::ChunkAttentionParams params;
};

Launch launch_of(const Plan& p, const Tensor& q) {
  Launch l;
  cuda::ChunkAttentionParams& c = l.params;
  c.batch_heads = p.batch_heads;
  c.length = p.length;
  c.n_hashes = p.n_hashes;
  c.chunk_len = p.chunk_len;
  c.d = q.size(-1);
  c.chunks_before = p.chunks_before;
  c.chunks_after = p.chunks_after;
  c.causal = p.causal;
  c.count_duplicates = p.count_duplicates;
  c.attend_across_buckets = p.attend_across_buckets;
  c.self_penalty = static_cast<float>(p.self_penalty);
  c.masked_penalty = static_cast<float>(p.masked_penalty);
  c.dtype = q.dtype();
  l.perm = p.perm.contiguous();
  l.valid = p.valid.contiguous();
  c.perm = l.perm.data<int64_t>();
  c.valid = l.valid.data<bool>();
  if (!p.attend_across_buckets) {
    l.slot_bucket = p.slot_bucket.contiguous();
    c.slot_bucket = l.slot_bucket.data<int64_t>();
  }
  if (p.count_duplicates) {
    l.token_chunk = p.token_chunk.contiguous();
    l.token_bucket = p.token_bucket.contiguous();
    c.token_chunk = l.token_chunk.data<int64_t>();
    c.token_bucket = l.token_bucket.data<int64_t>();
  }
  if (p.dropout_p > 0) {
    // The blocks of chunk_attention_blocks.h: each full block of a round advances the Philox
    // counter by the same amount, the last one of a round by its own.
    c.dropout = true;
    c.keep_prob = 1 - p.dropout_p;
    c.keep_scale = static_cast<float>(1 / (1 - p.dropout_p));
    c.dropout_state = p.dropout_state;
    const int64_t per_block = chunk_blocks::block_chunks(p),
                  ncr = chunk_blocks::chunks_per_round(p);
    const int64_t spc = chunk_blocks::scores_per_chunk(p);
    c.block_chunks = per_block;
    c.block_advance = static_cast<uint64_t>((per_block * spc + 3) / 4);
    c.round_advance = 0;
    for (int64_t first = 0; first < ncr; first += per_block) {
      c.round_advance += static_cast<uint64_t>((std::min(per_block, ncr - first) * spc + 3) / 4);
    }
  }
  return l;
}

TensorOptions f32_on(const Tensor& t) { return {.dtype = DType::f32, .device = t.device()}; }

}  // namespace

std::string shape_reason(const ChunkAttentionPlan& p, int64_t d_head, DType dtype,
                         int64_t max_shared_bytes) {
  if (dtype != DType::f32 && dtype != DType::bf16 && dtype != DType::f16) {
    return fmt::format("dtype {} (the CUDA kernel takes f32, bf16 and f16)", dtype);
  }
  if (!cuda::chunk_attention_compiled_for(p.chunk_len, d_head)) {
    return fmt::format(
        "chunk_len {} with d_head {} (the CUDA kernel is compiled for chunk_len 32 and 64 with "
        "d_head 1..128, and chunk_len 128 with d_head 1..32)",
        p.chunk_len, d_head);
  }
  const int64_t ncr = p.length / p.chunk_len;
  if (p.length % p.chunk_len != 0 || p.length > kIntMax || p.batch_heads * ncr > kIntMax ||
      p.n_hashes * ncr > kIntMax) {
    return fmt::format(
        "length {} with chunk_len {}, {} batch-heads and {} hashes (the CUDA kernel needs a "
        "multiple of chunk_len, lengths and chunk counts below 2^31)",
        p.length, p.chunk_len, p.batch_heads, p.n_hashes);
  }
  const int64_t dp = cuda::chunk_attention_padded_d(d_head);
  int64_t bytes = 0;
  for (bool backward : {false, true}) {
    bytes = std::max<int64_t>(
        bytes, static_cast<int64_t>(cuda::chunk_attention_smem(p.chunk_len, dp, p.n_hashes,
                                                               !p.attend_across_buckets,
                                                               p.count_duplicates, backward)
                                        .total));
  }
  if (bytes > max_shared_bytes) {
    return fmt::format(
        "chunk_len {} with d_head {} and {} hashes needs {} bytes of shared memory per block, the "
        "GPU allows {}",
        p.chunk_len, d_head, p.n_hashes, bytes, max_shared_bytes);
  }
  return {};
}

std::string unsupported_reason(const ChunkAttentionPlan& p, const Tensor& q) {
  if (!q.device().is_cuda()) return fmt::format("not a CUDA tensor (device {})", q.device().str());
  auto off_device = [&](const Tensor& t) { return !t.defined() || t.device() != q.device(); };
  if (off_device(p.perm) || off_device(p.valid) ||
      (!p.attend_across_buckets && off_device(p.slot_bucket)) ||
      (p.count_duplicates && (off_device(p.token_chunk) || off_device(p.token_bucket)))) {
    return "the plan's index tensors are not on the inputs' device";
  }
  if (q.dim() != 3 || q.size(0) != p.batch_heads || q.size(1) != p.length) {
    return fmt::format("q of shape {} does not match the plan ([{}, {}, d])", q.shape(),
                       p.batch_heads, p.length);
  }
  return shape_reason(p, q.size(2), q.dtype(),
                      cuda::chunk_attention_max_shared_bytes(q.device().index));
}

namespace {

// The launchers instantiate only the shapes applies() takes: forward and backward refuse anything
// else rather than run a wrong instantiation.
void check_call(const ChunkAttentionPlan& p, const Tensor& q, const Tensor& k, const Tensor& v) {
  const std::string reason = unsupported_reason(p, q);
  RW_CHECK(reason.empty(), "chunk_attention: the CUDA kernel cannot take this call: {}", reason);
  RW_CHECK(k.dtype() == q.dtype() && v.dtype() == q.dtype() && k.shape() == q.shape() &&
               v.shape() == q.shape() && k.device() == q.device() && v.device() == q.device(),
           "chunk_attention: q, k and v must share dtype, shape and device, got {} {} {}, {} {} "
           "{} and {} {} {}",
           q.dtype(), q.shape(), q.device(), k.dtype(), k.shape(), k.device(), v.dtype(), v.shape(),
           v.device());
}

}  // namespace

ForwardResult forward(const ChunkAttentionPlan& p, const Tensor& q, const Tensor& k,
                      const Tensor& v) {
  check_call(p, q, k, v);
  const int device = q.device().index;
  cuda::DeviceGuard guard(device);
  const Launch l = launch_of(p, q);
  const int64_t tokens = p.batch_heads * p.length, d = q.size(-1);
  Tensor acc = empty({p.batch_heads, p.length, d}, f32_on(q));
  Tensor run_max = empty({tokens}, f32_on(q)), run_denom = empty({tokens}, f32_on(q));
  Tensor log_denom = empty({tokens}, f32_on(q));
  cuda::launch_chunk_attention_forward(
      l.params, q.data_ptr(), k.data_ptr(), v.data_ptr(), acc.data<float>(), run_max.data<float>(),
      run_denom.data<float>(), log_denom.data<float>(), cuda::stream(device));
  return {.out = acc.to(q.dtype()), .max_logit = run_max, .log_denom = log_denom};
}

std::array<Tensor, 3> backward(const ChunkAttentionPlan& p, const Tensor& q, const Tensor& k,
                               const Tensor& v, const ForwardResult& saved, const Tensor& dout) {
  check_call(p, q, k, v);
  const int device = q.device().index;
  cuda::DeviceGuard guard(device);
  const Launch l = launch_of(p, q);
  const int64_t tokens = p.batch_heads * p.length, d = q.size(-1);
  const Tensor g = dout.to(q.dtype()).contiguous(), out = saved.out.contiguous();
  const Tensor max_logit = saved.max_logit.contiguous(), log_denom = saved.log_denom.contiguous();
  Tensor grad = empty({tokens, d}, f32_on(q)), dout_out = empty({tokens}, f32_on(q));
  const Shape shape{p.batch_heads, p.length, d};
  Tensor dq = zeros(shape, f32_on(q)), dk = zeros(shape, f32_on(q)), dv = zeros(shape, f32_on(q));
  cuda::launch_chunk_attention_backward(
      l.params, q.data_ptr(), k.data_ptr(), v.data_ptr(), out.data_ptr(), g.data_ptr(),
      max_logit.data<float>(), log_denom.data<float>(), grad.data<float>(), dout_out.data<float>(),
      dq.data<float>(), dk.data<float>(), dv.data<float>(), cuda::stream(device));
  return {dq.to(q.dtype()), dk.to(q.dtype()), dv.to(q.dtype())};
}

#else  // built without CUDA: the kernel never applies.

std::string shape_reason(const ChunkAttentionPlan&, int64_t, DType, int64_t) {
  return "rewind was built without CUDA";
}
std::string unsupported_reason(const ChunkAttentionPlan&, const Tensor&) {
  return "rewind was built without CUDA";
}
ForwardResult forward(const ChunkAttentionPlan&, const Tensor&, const Tensor&, const Tensor&) {
  RW_CHECK(false, "chunk_attention: the CUDA kernel is not built (REWIND_CUDA=OFF)");
  return {};
}
std::array<Tensor, 3> backward(const ChunkAttentionPlan&, const Tensor&, const Tensor&,
                               const Tensor&, const ForwardResult&, const Tensor&) {
  RW_CHECK(false, "chunk_attention: the CUDA kernel is not built (REWIND_CUDA=OFF)");
  return {};
}

#endif

}  // namespace rw::reformer::cuda_kernel
