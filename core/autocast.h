#pragma once
// Automatic mixed precision, like torch.autocast: while an AutocastScope for bf16 or f16 is alive
// on a thread, the ops of the op layer choose their own compute dtype:
//
// - matmul-class ops (rw::matmul, rw::linear: every nn::Linear, attention projection and score
//   product) cast their f32 operands (and those of the other half type) to the compute dtype with
//   the differentiable cast, multiply with f32 accumulation, and return the compute dtype. The
//   parameters stay f32 (master weights): the cast's backward hands their gradients back in f32.
// - numerically sensitive ops (softmax, log_softmax, logsumexp, layer_norm, cross_entropy, and
//   the sum and mean reductions that losses use) upcast bf16/f16 inputs to f32 and return f32.
// - every other op runs in its inputs' dtype (type promotion as usual: bf16 + f32 -> f32, so a
//   residual stream that starts in f32 stays f32).
// f64 operands are never cast (gradient checks stay f64). An AutocastScope for f32 turns autocast
// off inside it; scopes nest and restore the outer state.
//
//   {
//     rw::AutocastScope autocast(rw::DType::bf16);
//     rw::Tensor loss = model.loss(tokens, targets);  // matmuls in bf16, softmax/loss in f32
//     rw::backward(loss);                              // inside the scope, see below
//   }
//
// Run backward inside the same scope as the forward: rewind recomputes activations in backward
// (reversible stack, chunked feed-forward, chunked cross-entropy, chunk attention), and a
// recomputation runs under the autocast state current at backward time. (The reversible stack also
// replays each block under the state its forward ran with.)
#include "core/dtype.h"

namespace rw {

class Tensor;

// The compute dtype of matmul-class ops on this thread: bf16 or f16 inside an AutocastScope for
// it, f32 when autocast is off.
DType autocast_dtype();
// autocast_dtype() != f32.
bool autocast_enabled();

class AutocastScope {
 public:
  // `compute` is bf16 or f16 (autocast on) or f32 (off); anything else is an rw::Error.
  explicit AutocastScope(DType compute);
  ~AutocastScope();
  AutocastScope(const AutocastScope&) = delete;
  AutocastScope& operator=(const AutocastScope&) = delete;

 private:
  DType previous_;
};

namespace detail {

// For matmul-class ops: under autocast, x cast (recorded, differentiable) to the compute dtype
// when it is f32 or the other half type; otherwise x itself.
Tensor autocast_lower(const Tensor& x);
// For numerically sensitive ops: under autocast, a bf16/f16 x cast (recorded) to f32; otherwise x.
Tensor autocast_upcast(const Tensor& x);

}  // namespace detail
}  // namespace rw
