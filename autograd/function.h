#pragma once
// Custom functions: an op with a user-written forward and backward (a custom vector-Jacobian
// product), the C++ counterpart of torch.autograd.Function.
//
// A CustomFunction is a value with three named parts; define it once and apply it to inputs:
//
//   // y = x^2, with a hand-written gradient 2x.
//   const rw::CustomFunction kSquare{
//       .name = "square",
//       .forward = [](rw::FunctionContext& ctx, std::span<const rw::Tensor> in) {
//         ctx.save_for_backward({in[0]});
//         return std::vector<rw::Tensor>{rw::mul(in[0], in[0])};
//       },
//       .backward = [](rw::FunctionContext& ctx, std::span<const rw::Tensor> grad) {
//         rw::Tensor x = ctx.saved(0);
//         return std::vector<rw::Tensor>{rw::mul(grad[0], rw::mul(x, 2.0))};
//       },
//   };
//   rw::Tensor y = kSquare.apply({x})[0];   // or kSquare.apply1({x})
//
// Why a context instead of handing backward every input and output: the function decides what to
// keep. A reversible block saves only its outputs (that is the whole point of it), a function with
// a cheap recompute may save nothing at all. Non-tensor parameters (a clip bound, an axis) are
// captured by the lambdas; a value that forward computes and backward needs (a seed, a shape) goes
// in ctx.state (a std::any).
//
// Semantics
// - forward runs with grad mode off on detached aliases of the inputs, so the ops inside it record
//   nothing; it returns one or more defined tensors. Each output is a fresh handle (never one of
//   the inputs' handles), so returning an input unchanged is allowed. The inputs share storage
//   with the caller's tensors: forward must not modify them in place.
// - When grad mode is on and some input requires grad, one node is recorded on the current tape and
//   every floating output requires grad; integral outputs (indices, masks) never do.
// - backward runs later, with grad mode off, and receives one gradient per output: zeros for a
//   floating output that got no gradient, undefined for an integral output. It returns one entry
//   per input: a gradient of exactly that input's shape, or an undefined Tensor() for "no gradient"
//   (entries for inputs that do not require grad are ignored, see needs_input_grad). A gradient of
//   another floating dtype is converted to the input's dtype; a wrong count or shape is an
//   rw::Error naming the function.
// - Tensors saved with save_for_backward go through SavedTensor: if one is modified in place before
//   backward, backward throws an rw::Error naming the function instead of using the wrong values.
// - backward may use any op, and may open a TapeScope to recompute and differentiate a block
//   locally (as reversible layers do). Higher-order gradients are not supported: backward is not
//   recorded, and turning grad mode on inside it to record on the outer tape is an rw::Error.
// - The node keeps the context (saved tensors, state) until backward runs without retain_graph or
//   the outputs die, like any op's node.
#include <any>
#include <functional>
#include <initializer_list>
#include <span>
#include <vector>

#include "autograd/tape.h"
#include "core/tensor.h"

namespace rw {

class FunctionContext {
 public:
  // Keeps tensors for backward (inputs as received by forward, outputs, or intermediates), each
  // version-checked. Replaces anything saved before.
  void save_for_backward(std::vector<Tensor> tensors);
  // The i-th saved tensor; throws rw::Error when it was modified in place since it was saved.
  const Tensor& saved(std::size_t i) const;
  std::vector<Tensor> saved_tensors() const;
  std::size_t num_saved() const { return saved_.size(); }

  // Whether input i requires grad (so backward may skip computing the others).
  bool needs_input_grad(std::size_t i) const;
  std::size_t num_inputs() const { return needs_input_grad_.size(); }
  const char* name() const { return name_; }

  // Free-form state from forward to backward (e.g. a seed, a shape, a flag). Never put a tensor
  // that takes part in autograd here (it would keep its graph alive): save it instead.
  std::any state;

 private:
  friend struct CustomFunction;
  const char* name_ = "";
  std::vector<bool> needs_input_grad_;
  std::vector<SavedTensor> saved_;
};

struct CustomFunction {
  using Forward =
      std::function<std::vector<Tensor>(FunctionContext& ctx, std::span<const Tensor> inputs)>;
  using Backward = std::function<std::vector<Tensor>(FunctionContext& ctx,
                                                     std::span<const Tensor> grad_outputs)>;

  // Names the node on the tape and every error message; must outlive the graph (a literal).
  const char* name = "custom_function";
  Forward forward;
  Backward backward;

  // Runs forward on `inputs` and, when needed, records the backward. Undefined inputs are allowed
  // (optional arguments) and passed through as undefined.
  std::vector<Tensor> apply(std::vector<Tensor> inputs) const;
  // apply() for a function with exactly one output.
  Tensor apply1(std::vector<Tensor> inputs) const;
};

}  // namespace rw
