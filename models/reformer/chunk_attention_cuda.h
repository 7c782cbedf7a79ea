#pragma once
// The fused CUDA kernel of the chunk attention (models/reformer/chunk_attention.h): the same
// function as the op path and the CPU kernel, for f32, bf16 and f16 tensors on a CUDA device
// (bf16/f16 computed in f32: scores, softmax and accumulation; the output in the input dtype,
// max_logit and log_denom in f32). The kernels are in backends/cuda/lsh_chunk_attention_kernels.cu:
// per (batch-head, query chunk) a thread block keeps the chunk's scores in shared memory with an
// online softmax (FlashAttention style); rounds are combined by logsumexp as in the CPU kernel;
// backward recomputes the scores, adds dQ to its own rows and dK, dV with f32 atomics (so dK and
// dV are not bit-reproducible run to run, unlike the CPU kernel's).
//
// Shapes it does not take (chunk_len other than 32, 64, 128; d_head above 128; more shared memory
// than the GPU allows; ...) run on the op path: unsupported_reason says why.
#include <array>
#include <cstdint>
#include <string>

#include "core/tensor.h"
#include "models/reformer/chunk_attention.h"
#include "models/reformer/chunk_attention_cpu.h"

namespace rw::reformer::cuda_kernel {

using ForwardResult = cpu_kernel::ForwardResult;

// Why the kernel cannot compute chunk_attention(q, k, v, plan) for q (and k, v alike) of this
// head size and dtype, on a GPU allowing max_shared_bytes of shared memory per block; "" when it
// can. Pure host logic (no device needed).
std::string shape_reason(const ChunkAttentionPlan& p, int64_t d_head, DType dtype,
                         int64_t max_shared_bytes);

// The same for actual inputs: also "" only for CUDA tensors in a build with CUDA.
std::string unsupported_reason(const ChunkAttentionPlan& p, const Tensor& q);
inline bool applies(const ChunkAttentionPlan& p, const Tensor& q) {
  return unsupported_reason(p, q).empty();
}

// q, k, v: [BH, Lp, d] contiguous, on the plan's CUDA device; requires applies(p, q).
ForwardResult forward(const ChunkAttentionPlan& p, const Tensor& q, const Tensor& k,
                      const Tensor& v);

// Gradients of q, k, v ([BH, Lp, d], input dtype) from forward's inputs, results and dout.
std::array<Tensor, 3> backward(const ChunkAttentionPlan& p, const Tensor& q, const Tensor& k,
                               const Tensor& v, const ForwardResult& saved, const Tensor& dout);

}  // namespace rw::reformer::cuda_kernel
