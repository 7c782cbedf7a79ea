#include "autograd/reversible.h"

#include <memory>
#include <string>

#include "autograd/function.h"
#include "autograd/tape.h"
#include "core/autocast.h"
#include "core/generator_scope.h"
#include "core/ops.h"

namespace rw {

// --- block cache
// ------------------------------------------------------------------------------------

namespace {
thread_local BlockCache* t_block_cache = nullptr;
}  // namespace

void BlockCache::save(const void* owner, std::any value) {
  entries_[owner].values.push_back(std::move(value));
}

std::any BlockCache::take(const void* owner) {
  auto it = entries_.find(owner);
  const std::size_t saved = it == entries_.end() ? 0 : it->second.values.size();
  const std::size_t taken = it == entries_.end() ? 0 : it->second.next;
  RW_CHECK(taken < saved,
           "block cache: take() found no value left for this owner ({} saved in forward, {} "
           "already taken): a block function must take back in its recomputation exactly what it "
           "saved in forward",
           saved, taken);
  // A copy, not a move: a backward with retain_graph replays the block again.
  return it->second.values[it->second.next++];
}

BlockCache* current_block_cache() { return t_block_cache; }

bool recomputing_for_backward() { return t_block_cache != nullptr && t_block_cache->replaying(); }

BlockCacheScope::BlockCacheScope(BlockCache* cache, bool replaying) : previous_(t_block_cache) {
  t_block_cache = cache;
  if (cache == nullptr) return;
  cache->replaying_ = replaying;
  if (replaying) {
    for (auto& [owner, entries] : cache->entries_) entries.next = 0;
  }
}

BlockCacheScope::~BlockCacheScope() { t_block_cache = previous_; }

// --- the stack
// --------------------------------------------------------------------------------------

namespace {

constexpr const char* kOp = "reversible_stack";

// What forward hands to backward about one call of F or G.
struct FunctionRecord {
  PhiloxState rng;              // the state of the generator installed for the call
  DType autocast = DType::f32;  // the autocast compute dtype it ran under (core/autocast.h)
  BlockCache cache;
};

struct BlockRecord {
  FunctionRecord f, g;
  // The function's declared parameters: [begin, begin + count) of the node's parameter list.
  std::size_t f_begin = 0, f_count = 0, g_begin = 0, g_count = 0;
};

std::vector<Tensor> declared_parameters(const ReversibleFunction& fn) {
  return fn.parameters ? fn.parameters() : std::vector<Tensor>{};
}

// Runs one F or G under its own generator (forked now, or the recorded state when replaying) and
// block cache (null: nothing will be recomputed).
Tensor run_function(const ReversibleFunction& fn, const Tensor& x, FunctionRecord& record,
                    bool replaying, bool use_cache) {
  Generator generator;
  if (replaying) {
    generator.set_state(record.rng);
  } else {
    generator = current_generator().fork();
    record.rng = generator.state();
  }
  GeneratorScope generator_scope(generator);
  BlockCacheScope cache_scope(use_cache ? &record.cache : nullptr, replaying);
  // A recomputation runs in the precision its forward ran in, whatever the state at backward time.
  if (!replaying) record.autocast = autocast_dtype();
  AutocastScope autocast(record.autocast);
  Tensor out = fn.forward(x);
  // Under autocast a function ending in a projection returns the compute dtype (bf16/f16); the
  // residual stream keeps its own dtype (f32), so the output is cast back (recorded).
  if (autocast_enabled() && out.defined() && is_floating(out.dtype()) && out.dtype() != x.dtype()) {
    out = out.to(x.dtype());
  }
  return out;
}

void check_output(const Tensor& out, const Tensor& like, std::size_t block, char function) {
  RW_CHECK(out.defined(), "{}: block {} {} returned an undefined tensor", kOp, block, function);
  RW_CHECK(
      out.shape() == like.shape() && out.dtype() == like.dtype() && out.device() == like.device(),
      "{}: block {} {} must keep its input's shape, dtype and device (a residual is added "
      "to it): got {} {} on {}, expected {} {} on {}",
      kOp, block, function, out.shape(), out.dtype(), out.device(), like.shape(), like.dtype(),
      like.device());
}

void check_halves(const Tensor& x1, const Tensor& x2) {
  RW_CHECK(x1.defined() && x2.defined(), "{}: both halves (x1, x2) must be defined tensors", kOp);
  RW_CHECK(x1.shape() == x2.shape() && x1.dtype() == x2.dtype() && x1.device() == x2.device(),
           "{}: the halves must match in shape, dtype and device: x1 is {} {} on {}, x2 is {} {} "
           "on {}",
           kOp, x1.shape(), x1.dtype(), x1.device(), x2.shape(), x2.dtype(), x2.device());
  RW_CHECK(is_floating(x1.dtype()), "{}: the halves must be floating point, got {}", kOp,
           x1.dtype());
}

// Gives an error raised inside a block's recomputation the block's name (out-of-memory errors keep
// their type).
template <typename Fn>
auto in_block(std::size_t block, char function, Fn&& fn) {
  try {
    return fn();
  } catch (const OutOfMemoryError&) {
    throw;
  } catch (const Error& e) {
    throw Error(fmt::format("{}: backward of block {} {}: {}", kOp, block, function, e.what()));
  }
}

// The recomputation runs the function as it is at backward time: it must still read the tensors
// it declared in forward (a module moved with to(), or given new parameter tensors, in between
// would be differentiated with respect to the wrong tensors).
void check_same_parameters(const ReversibleFunction& fn, std::span<const Tensor> recorded,
                           std::size_t block, char function) {
  const std::vector<Tensor> now = declared_parameters(fn);
  bool same = now.size() == recorded.size();
  for (std::size_t j = 0; same && j < now.size(); ++j) same = now[j].is_same(recorded[j]);
  RW_CHECK(same,
           "{}: backward of block {} {}: its parameters are not the tensors it declared in forward "
           "({} then, {} now); do not replace or move parameters between forward and backward",
           kOp, block, function, recorded.size(), now.size());
}

// Recomputes `fn` at x on a local tape and backpropagates `dout` through it. Returns fn(x)
// (detached) and adds d/dx into `dx_total` and the parameter gradients into `param_grads`.
Tensor recompute_and_backprop(const ReversibleFunction& fn, const Tensor& x, const Tensor& dout,
                              FunctionRecord& record, std::span<const Tensor> params,
                              std::span<Tensor> param_grads, Tensor& dx_total, std::size_t block,
                              char function) {
  return in_block(block, function, [&] {
    TapeScope scope;
    AutocastScope autocast(record.autocast);  // the recomputation's own backward too
    Tensor x_leaf = x.detach().requires_grad_();
    Tensor out = run_function(fn, x_leaf, record, /*replaying=*/true, /*use_cache=*/true);
    if (out.requires_grad()) {
      std::vector<Tensor> wrt{x_leaf};
      std::vector<std::size_t> param_index;
      for (std::size_t j = 0; j < params.size(); ++j) {
        if (!params[j].defined() || !params[j].requires_grad()) continue;
        wrt.push_back(params[j]);
        param_index.push_back(j);
      }
      std::vector<Tensor> grads =
          grad(std::span<const Tensor>(&out, 1), std::span<const Tensor>(&dout, 1), wrt,
               {.error_on_unlisted = true});
      if (grads[0].defined()) dx_total = add(dx_total, grads[0]);
      for (std::size_t k = 0; k < param_index.size(); ++k) {
        Tensor& slot = param_grads[param_index[k]];
        const Tensor& g = grads[k + 1];
        if (g.defined()) slot = slot.defined() ? add(slot, g) : g;
      }
    }
    return out.detach();
  });
}

std::pair<Tensor, Tensor> plain_stack(std::span<const ReversibleBlock> blocks, const Tensor& x1,
                                      const Tensor& x2) {
  Tensor y1 = x1, y2 = x2;
  FunctionRecord unused;
  for (std::size_t i = 0; i < blocks.size(); ++i) {
    Tensor fx = run_function(blocks[i].f, y2, unused, false, false);
    check_output(fx, y1, i, 'F');
    y1 = add(y1, fx);
    Tensor gy = run_function(blocks[i].g, y1, unused, false, false);
    check_output(gy, y2, i, 'G');
    y2 = add(y2, gy);
  }
  return {y1, y2};
}

}  // namespace

std::pair<Tensor, Tensor> reversible_stack(std::span<const ReversibleBlock> blocks,
                                           const Tensor& x1, const Tensor& x2,
                                           const ReversibleOptions& options) {
  check_halves(x1, x2);
  for (std::size_t i = 0; i < blocks.size(); ++i) {
    RW_CHECK(blocks[i].f.forward && blocks[i].g.forward, "{}: block {} has no {} function", kOp, i,
             blocks[i].f.forward ? 'G' : 'F');
  }
  if (blocks.empty()) return {x1, x2};
  if (!options.reversible) return plain_stack(blocks, x1, x2);

  // The node's inputs: x1, x2, then every block's F and G parameters.
  std::vector<Tensor> inputs{x1, x2};
  auto records = std::make_shared<std::vector<BlockRecord>>(blocks.size());
  for (std::size_t i = 0; i < blocks.size(); ++i) {
    BlockRecord& r = (*records)[i];
    std::vector<Tensor> fp = declared_parameters(blocks[i].f);
    r.f_begin = inputs.size() - 2;
    r.f_count = fp.size();
    inputs.insert(inputs.end(), fp.begin(), fp.end());
    std::vector<Tensor> gp = declared_parameters(blocks[i].g);
    r.g_begin = inputs.size() - 2;
    r.g_count = gp.size();
    inputs.insert(inputs.end(), gp.begin(), gp.end());
  }
  const bool recording = needs_grad(std::span<const Tensor>(inputs));
  // The parameters as the blocks hold them (with their autograd identity, which the node's
  // detached inputs lack): backward differentiates the recomputation with respect to these.
  auto params = std::make_shared<std::vector<Tensor>>(inputs.begin() + 2, inputs.end());
  // The blocks are copied: the node outlives the caller's span.
  auto stack = std::make_shared<std::vector<ReversibleBlock>>(blocks.begin(), blocks.end());

  const CustomFunction fn{
      .name = kOp,
      .forward =
          [stack, records, recording](FunctionContext& ctx, std::span<const Tensor> in) {
            Tensor y1 = in[0], y2 = in[1];
            for (std::size_t i = 0; i < stack->size(); ++i) {
              BlockRecord& r = (*records)[i];
              Tensor fx = run_function((*stack)[i].f, y2, r.f, false, recording);
              check_output(fx, y1, i, 'F');
              y1 = add(y1, fx);
              Tensor gy = run_function((*stack)[i].g, y1, r.g, false, recording);
              check_output(gy, y2, i, 'G');
              y2 = add(y2, gy);
            }
            // The outputs and (version-checked, so an optimizer step between forward and backward
            // is an error, not a wrong gradient) the parameters; never the inputs.
            std::vector<Tensor> saved{y1, y2};
            saved.insert(saved.end(), in.begin() + 2, in.end());
            ctx.save_for_backward(std::move(saved));
            return std::vector<Tensor>{y1, y2};
          },
      .backward =
          [stack, records, params, hook = options.on_reconstructed](FunctionContext& ctx,
                                                                    std::span<const Tensor> grads) {
            Tensor y1, y2;
            {
              // Checks the versions. Only the outputs are kept: the saved list would otherwise hold
              // the last block's outputs alive through the whole walk.
              std::vector<Tensor> saved = ctx.saved_tensors();
              y1 = std::move(saved[0]);
              y2 = std::move(saved[1]);
            }
            Tensor dy1 = grads[0], dy2 = grads[1];
            std::vector<Tensor> param_grads(params->size());
            for (std::size_t i = stack->size(); i-- > 0;) {
              BlockRecord& r = (*records)[i];
              const ReversibleBlock& block = (*stack)[i];
              auto f_params = std::span<const Tensor>(*params).subspan(r.f_begin, r.f_count);
              auto g_params = std::span<const Tensor>(*params).subspan(r.g_begin, r.g_count);
              check_same_parameters(block.f, f_params, i, 'F');
              check_same_parameters(block.g, g_params, i, 'G');
              // G: x2 = y2 - G(y1); dx1 = dy1 + dy2 . dG/dy1.
              Tensor dx1 = dy1;
              Tensor gy = recompute_and_backprop(
                  block.g, y1, dy2, r.g, g_params,
                  std::span<Tensor>(param_grads).subspan(r.g_begin, r.g_count), dx1, i, 'G');
              Tensor x2 = sub(y2, gy);
              // Each block's inputs are recovered from its outputs, which (like dy1, now folded
              // into dx1) are dead from here on: released before F's recomputation, the step with
              // the largest working set, so the walk holds four sequence-sized tensors, not six.
              gy = Tensor();
              y2 = Tensor();
              dy1 = Tensor();
              // F: x1 = y1 - F(x2); dx2 = dy2 + dx1 . dF/dx2.
              Tensor dx2 = dy2;
              Tensor fx = recompute_and_backprop(
                  block.f, x2, dx1, r.f, f_params,
                  std::span<Tensor>(param_grads).subspan(r.f_begin, r.f_count), dx2, i, 'F');
              Tensor x1 = sub(y1, fx);
              fx = Tensor();
              if (hook) hook(i, x1, x2);
              y1 = std::move(x1);
              y2 = std::move(x2);
              dy1 = std::move(dx1);
              dy2 = std::move(dx2);
            }
            std::vector<Tensor> out{dy1, dy2};
            out.insert(out.end(), std::make_move_iterator(param_grads.begin()),
                       std::make_move_iterator(param_grads.end()));
            return out;
          },
  };
  std::vector<Tensor> out = fn.apply(std::move(inputs));
  return {out[0], out[1]};
}

// --- layout helpers
// ---------------------------------------------------------------------------------

std::pair<Tensor, Tensor> split_copies(const Tensor& x) {
  RW_CHECK(x.defined(), "split_copies: the input is undefined");
  return {x, x};
}

std::pair<Tensor, Tensor> split_halves(const Tensor& x, int64_t dim) {
  RW_CHECK(x.defined(), "split_halves: the input is undefined");
  const int64_t d = dim < 0 ? dim + x.dim() : dim;
  RW_CHECK(d >= 0 && d < x.dim(), "split_halves: dim {} is out of range for shape {}", dim,
           x.shape());
  const int64_t n = x.size(d);
  RW_CHECK(n % 2 == 0, "split_halves: dim {} of shape {} has odd size {}; it must split evenly",
           dim, x.shape(), n);
  return {x.narrow(d, 0, n / 2), x.narrow(d, n / 2, n / 2)};
}

Tensor join_concat(const Tensor& y1, const Tensor& y2, int64_t dim) {
  RW_CHECK(y1.defined() && y2.defined(), "join_concat: both halves must be defined");
  RW_CHECK(y1.shape() == y2.shape(), "join_concat: the halves differ in shape: {} vs {}",
           y1.shape(), y2.shape());
  return concat({y1, y2}, dim);
}

Tensor join_mean(const Tensor& y1, const Tensor& y2) {
  RW_CHECK(y1.defined() && y2.defined(), "join_mean: both halves must be defined");
  RW_CHECK(y1.shape() == y2.shape(), "join_mean: the halves differ in shape: {} vs {}", y1.shape(),
           y2.shape());
  return mul(add(y1, y2), 0.5);
}

}  // namespace rw
