#pragma once
// The reversible-graph API: a stack of reversible residual blocks (RevNet, Gomez et al. 2017; the
// Reformer's second idea) whose activation memory does not grow with depth.
//
// Every block i maps a pair (x1, x2) to
//     y1 = x1 + F_i(x2),    y2 = x2 + G_i(y1),
// and since x2 = y2 - G_i(y1), x1 = y1 - F_i(x2), backward can recompute each block's inputs from
// its outputs. So the stack runs forward with nothing recorded inside it and puts ONE node on the
// tape, which keeps only the final (y1, y2). Its backward walks the blocks last to first:
//   1. recompute G(y1) on a local tape, recover x2 = y2 - G(y1), backpropagate dy2 through G:
//      dx1 = dy1 + (dy2 . dG/dy1), plus G's parameter gradients;
//   2. recompute F(x2) on a local tape, recover x1 = y1 - F(x2), backpropagate dx1 through F:
//      dx2 = dy2 + (dx1 . dF/dx2), plus F's parameter gradients;
// and hands (dx1, dx2) and every parameter gradient to the rest of the graph. At any time only one
// block's activations exist, in forward and in backward. No checkpoints are kept.
//
//   std::vector<rw::ReversibleBlock> blocks;
//   for (auto& layer : layers)   // attention and feed-forward modules (or any callables)
//     blocks.push_back({.f = rw::reversible_function(layer.attention),
//                       .g = rw::reversible_function(layer.feed_forward)});
//   auto [x1, x2] = rw::split_copies(embedded);
//   auto [y1, y2] = rw::reversible_stack(blocks, x1, x2);            // or {.reversible = false}
//   rw::Tensor out = rw::join_mean(y1, y2);
//
// Randomness is replayed exactly: before each F and G runs, the stack forks a generator from
// rw::current_generator() and installs it (GeneratorScope) for that call; the backward reinstalls
// the same state, so dropout masks and LSH rotations drawn from current_generator() come out
// identical. The plain residual mode forks in the same order, so both modes see the same numbers.
//
// A function can also hand values from its forward to its recomputation through the block cache
// (current_block_cache(), below): the Reformer keeps its hash buckets this way, so the backward
// attends within the very buckets the forward used.
//
// Parameters: a block function declares the tensors that require grad it reads besides its input
// (a module's parameters()). They become inputs of the stack's node, so their gradients flow
// through the tape like any other (to leaves' grad(), or on to whatever computed them). A function
// that reads an undeclared tensor requiring grad is an rw::Error in backward naming the block, not
// a silently missing gradient.
//
// Nesting works (a block function may run a reversible stack itself), and so does anything a
// block function does with ops, modules, custom functions (chunked feed-forward) or the tape.
#include <any>
#include <cstddef>
#include <functional>
#include <memory>
#include <span>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/tensor.h"

namespace rw {

// One of the two functions of a reversible block.
struct ReversibleFunction {
  // x -> F(x) of the same shape, dtype and device. Must be deterministic given the generator the
  // stack installs (draw randomness from current_generator()).
  std::function<Tensor(const Tensor&)> forward;
  // The tensors requiring grad that forward reads besides its input. Asked at every stack call, so
  // a module moved to another device (or given new parameter tensors) is followed. Null: none.
  std::function<std::vector<Tensor>()> parameters = nullptr;
};

// Adapts anything with `Tensor forward(const Tensor&)` and `std::vector<Tensor> parameters()`
// (every nn::Module) held by shared_ptr: the function keeps the module alive.
template <typename M>
ReversibleFunction reversible_function(std::shared_ptr<M> module) {
  return {.forward = [module](const Tensor& x) { return module->forward(x); },
          .parameters = [module] { return module->parameters(); }};
}

struct ReversibleBlock {
  ReversibleFunction f;  // y1 = x1 + f(x2)
  ReversibleFunction g;  // y2 = x2 + g(y1)
};

// Called in backward with each block's recovered inputs (block index, x1, x2), last block first.
// For diagnostics: the tests compare them with the true inputs; users can measure float32 drift.
using ReconstructionHook =
    std::function<void(std::size_t block, const Tensor& x1, const Tensor& x2)>;

struct ReversibleOptions {
  // false: the same blocks as a plain residual stack, every op on the tape (for ablations and as
  // the reference the reversible gradients are tested against).
  bool reversible = true;
  ReconstructionHook on_reconstructed = nullptr;  // reversible mode only
};

// Runs the blocks in order on (x1, x2) and returns (y1, y2). x1 and x2 must have the same shape,
// dtype and device, and every F and G must return that shape, dtype and device (rw::Error naming
// the block and function otherwise). No blocks: returns (x1, x2).
std::pair<Tensor, Tensor> reversible_stack(std::span<const ReversibleBlock> blocks,
                                           const Tensor& x1, const Tensor& x2,
                                           const ReversibleOptions& options = {});

// --- the Reformer's layout
// ------------------------------------------------------------------------

// (x, x): both halves start as the input (the Reformer, trax and lucidrains).
std::pair<Tensor, Tensor> split_copies(const Tensor& x);
// x split into two equal halves along `dim` (RevNet's channel split); the size must be even.
std::pair<Tensor, Tensor> split_halves(const Tensor& x, int64_t dim = -1);
// cat(y1, y2) along `dim` (trax: followed by a layer norm over 2 x d_model).
Tensor join_concat(const Tensor& y1, const Tensor& y2, int64_t dim = -1);
// (y1 + y2) / 2 (lucidrains).
Tensor join_mean(const Tensor& y1, const Tensor& y2);

// --- values handed from a block function's forward to its recomputation
// ----------------------------

// While a reversible stack that records a node runs F or G, current_block_cache() is that call's
// cache: in forward it is empty and not replaying, and what the function saves there is handed
// back, in the same order, when backward recomputes that call (replaying). Outside a reversible
// block, in plain residual mode, and when the stack records nothing (no grad) it is null: nothing
// will be recomputed.
//
//   if (rw::BlockCache* cache = rw::current_block_cache(); cache && cache->replaying()) {
//     buckets = std::any_cast<rw::Tensor>(cache->take(this));
//   } else {
//     buckets = hash(x);
//     if (cache) cache->save(this, buckets);
//   }
//
// Keys are owners (a module's `this`); one owner may save several values (a module called twice
// in one block), taken back in the order saved. Never save a tensor that takes part in autograd
// (it would keep its graph alive): save integer tensors or detached values.
class BlockCache {
 public:
  bool replaying() const { return replaying_; }
  void save(const void* owner, std::any value);
  // The next value `owner` saved in forward; an rw::Error when there is none left.
  std::any take(const void* owner);

 private:
  friend class BlockCacheScope;
  struct Entries {
    std::vector<std::any> values;
    std::size_t next = 0;
  };
  std::unordered_map<const void*, Entries> entries_;
  bool replaying_ = false;
};

BlockCache* current_block_cache();

// Whether the code running now is a reversible stack's recomputation of a block function in
// backward (current_block_cache() is replaying). Such a recomputation is differentiated right
// after it returns, one block at a time, so an op may keep per-call intermediates for its backward
// (the chunked feed-forward's pre-activations) instead of computing
// them again there: the memory is one block's, never the stack's. Ops should still bound what they
// keep (a fixed budget), since one block's intermediates grow with the sequence length.
bool recomputing_for_backward();

// Installs `cache` (or null) as current_block_cache() while alive; with replaying = true, rewinds
// every owner's values to the first. Used by reversible_stack; public for custom reversible layers.
class BlockCacheScope {
 public:
  BlockCacheScope(BlockCache* cache, bool replaying);
  ~BlockCacheScope();
  BlockCacheScope(const BlockCacheScope&) = delete;
  BlockCacheScope& operator=(const BlockCacheScope&) = delete;

 private:
  BlockCache* previous_;
};

}  // namespace rw
