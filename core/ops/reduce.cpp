// Reductions: validation, output dtypes and shapes, and backward rules. The backend computes into
// a keepdim-layout output; keepdim=false is a reshape of it.
#include "core/ops/reduce.h"

#include <cmath>

#include "autograd/tape.h"
#include "core/autocast.h"
#include "core/ops/elementwise.h"
#include "core/ops/op_utils.h"

namespace rw {
namespace {

// The dims a reduction folds, normalised, and the shapes it produces.
struct ReducePlan {
  std::vector<int64_t> dims;  // sorted, unique
  Shape keep_shape;           // x's shape with 1 at each reduced dim
  Shape out_shape;            // keep_shape, or without the reduced dims when !keepdim
  int64_t count = 1;          // elements folded into each output
};

ReducePlan plan_reduction(const char* op, const Tensor& x, const std::vector<int64_t>& dims,
                          bool keepdim) {
  detail::check_defined(op, x, "x");
  ReducePlan p;
  p.dims = normalize_dims(op, dims, x.dim());
  p.keep_shape = x.shape();
  std::vector<bool> reduced(x.shape().size(), false);
  for (int64_t d : p.dims) {
    reduced[d] = true;
    p.count *= x.shape()[d];
    p.keep_shape[d] = 1;
  }
  for (std::size_t d = 0; d < x.shape().size(); ++d) {
    if (keepdim || !reduced[d]) p.out_shape.push_back(p.keep_shape[d]);
  }
  return p;
}

// max/min/argmax have no value over zero elements.
void check_nonempty(const char* op, const Tensor& x, const ReducePlan& p) {
  if (p.count != 0) return;
  for (int64_t d : p.dims) {
    RW_CHECK(x.shape()[d] != 0,
             "{}: cannot reduce over dim {} of extent 0 (shape {}): the result has no identity", op,
             d, x.shape());
  }
}

// Runs the backend reduction into a fresh keepdim-layout tensor of dtype `dt`.
Tensor reduce_forward(ReduceOp kind, const Tensor& x, const ReducePlan& p, DType dt) {
  Tensor out = empty(p.keep_shape, {.dtype = dt, .device = x.device()});
  if (out.numel() > 0) detail::backend_of(x).reduce(kind, x.detach(), out);
  return out;
}

// The output as the user sees it (keepdim or not); `keep` has no autograd metadata, so the
// reshape records nothing.
Tensor shaped(const Tensor& keep, const ReducePlan& p) {
  return keep.shape() == p.out_shape ? keep : keep.view(p.out_shape);
}

// The gradient of an output, viewed in keepdim layout so it broadcasts against x.
Tensor grad_keep(const Tensor& g, const Shape& keep_shape) {
  return g.shape() == keep_shape ? g : g.reshape(keep_shape);
}

DType widened_integral(DType t) { return is_integral(t) ? DType::i64 : t; }

}  // namespace

// --- sum / mean / prod / logsumexp -------------------------------------------------------------

Tensor sum(const Tensor& x, std::vector<int64_t> dims, bool keepdim) {
  // Autocast (core/autocast.h): sums of bf16/f16 values (losses, normalisers) are returned in f32.
  if (Tensor xf = detail::autocast_upcast(x); !xf.is_same(x))
    return sum(xf, std::move(dims), keepdim);
  ReducePlan p = plan_reduction("sum", x, dims, keepdim);
  // Integer and bool sums are i64, as PyTorch (no overflow for bool counts).
  Tensor keep = reduce_forward(ReduceOp::sum, x, p, widened_integral(x.dtype()));
  Tensor out = shaped(keep, p);
  if (needs_grad({&x})) {
    record("sum", {x}, out,
           [keep_shape = p.keep_shape, x_shape = x.shape()](std::span<const Tensor> g) {
             return std::vector<Tensor>{grad_keep(g[0], keep_shape).expand(x_shape)};
           });
  }
  return out;
}

Tensor mean(const Tensor& x, std::vector<int64_t> dims, bool keepdim) {
  if (Tensor xf = detail::autocast_upcast(x); !xf.is_same(x)) {
    return mean(xf, std::move(dims), keepdim);
  }
  ReducePlan p = plan_reduction("mean", x, dims, keepdim);
  RW_CHECK(is_floating(x.dtype()),
           "mean: expected a floating tensor, got dtype {} (shape {}); convert with .to(f32)",
           x.dtype(), x.shape());
  Tensor keep = reduce_forward(ReduceOp::mean, x, p, x.dtype());
  Tensor out = shaped(keep, p);
  if (needs_grad({&x})) {
    record(
        "mean", {x}, out,
        [keep_shape = p.keep_shape, x_shape = x.shape(), n = p.count](std::span<const Tensor> g) {
          // Scale the small gradient before broadcasting it.
          return std::vector<Tensor>{
              div(grad_keep(g[0], keep_shape), static_cast<double>(n)).expand(x_shape)};
        });
  }
  return out;
}

Tensor prod(const Tensor& x, std::vector<int64_t> dims, bool keepdim) {
  ReducePlan p = plan_reduction("prod", x, dims, keepdim);
  Tensor keep = reduce_forward(ReduceOp::prod, x, p, widened_integral(x.dtype()));
  Tensor out = shaped(keep, p);
  if (needs_grad({&x})) {
    // d prod / d x_i is the product of the other elements. Dividing prod by x_i fails at zeros, so
    // per slice: with no zero it is prod_nonzero / x_i; with one zero it is prod_nonzero at the
    // zero and 0 elsewhere; with two or more zeros it is 0 everywhere. Exact for any zero count.
    record(
        "prod", {x}, out,
        [sx = SavedTensor(x), dims = p.dims, keep_shape = p.keep_shape](std::span<const Tensor> g) {
          const Tensor& xv = sx.get("prod");
          Tensor nonzero = ne(xv, 0.0);
          Tensor safe_x = where(nonzero, xv, 1.0);
          Tensor prod_nonzero = prod(safe_x, dims, true);
          Tensor zeros_count = sum(logical_not(nonzero), dims, true);
          Tensor at_nonzero = where(eq(zeros_count, 0.0), div(prod_nonzero, safe_x), 0.0);
          Tensor at_zero = where(eq(zeros_count, 1.0), prod_nonzero, 0.0);
          Tensor d = where(nonzero, at_nonzero, at_zero);
          return std::vector<Tensor>{mul(d, grad_keep(g[0], keep_shape))};
        });
  }
  return out;
}

Tensor logsumexp(const Tensor& x, std::vector<int64_t> dims, bool keepdim) {
  if (Tensor xf = detail::autocast_upcast(x); !xf.is_same(x)) {
    return logsumexp(xf, std::move(dims), keepdim);
  }
  ReducePlan p = plan_reduction("logsumexp", x, dims, keepdim);
  // Integers promote to f32, as torch.logsumexp does.
  const Tensor xf = is_floating(x.dtype()) ? x : x.detach().to(DType::f32);
  Tensor keep = reduce_forward(ReduceOp::logsumexp, xf, p, xf.dtype());
  Tensor out = shaped(keep, p);
  if (needs_grad({&x})) {
    record("logsumexp", {x}, out,
           [sx = SavedTensor(x), sy = SavedTensor(keep),
            keep_shape = p.keep_shape](std::span<const Tensor> g) {
             Tensor soft = exp(sub(sx.get("logsumexp"), sy.get("logsumexp")));
             return std::vector<Tensor>{mul(soft, grad_keep(g[0], keep_shape))};
           });
  }
  return out;
}

// --- max / min -----------------------------------------------------------------------------------

namespace {

Tensor extreme(const char* op, ReduceOp kind, const Tensor& x, const std::vector<int64_t>& dims,
               bool keepdim) {
  ReducePlan p = plan_reduction(op, x, dims, keepdim);
  check_nonempty(op, x, p);
  Tensor keep = reduce_forward(kind, x, p, x.dtype());
  Tensor out = shaped(keep, p);
  if (needs_grad({&x})) {
    // The gradient is split evenly between tied extremes: mask / count.
    record(op, {x}, out,
           [op, sx = SavedTensor(x), sy = SavedTensor(keep), dims = p.dims,
            keep_shape = p.keep_shape](std::span<const Tensor> g) {
             const Tensor& xv = sx.get(op);
             Tensor mask = eq(xv, sy.get(op)).to(xv.dtype());
             Tensor count = sum(mask, dims, true);
             return std::vector<Tensor>{mul(mask, div(grad_keep(g[0], keep_shape), count))};
           });
  }
  return out;
}

}  // namespace

Tensor max(const Tensor& x, std::vector<int64_t> dims, bool keepdim) {
  return extreme("max", ReduceOp::max, x, dims, keepdim);
}

Tensor min(const Tensor& x, std::vector<int64_t> dims, bool keepdim) {
  return extreme("min", ReduceOp::min, x, dims, keepdim);
}

// --- var -----------------------------------------------------------------------------------------

Tensor var(const Tensor& x, std::vector<int64_t> dims, bool keepdim, int64_t correction) {
  ReducePlan p = plan_reduction("var", x, dims, keepdim);
  RW_CHECK(is_floating(x.dtype()),
           "var: expected a floating tensor, got dtype {} (shape {}); convert with .to(f32)",
           x.dtype(), x.shape());
  RW_CHECK(correction >= 0, "var: correction must be >= 0, got {}", correction);
  // Two passes (mean, then squared deviations) avoid the cancellation of E[x^2] - E[x]^2. A
  // non-positive N - correction divides by zero (inf or NaN), as PyTorch.
  const double denom = static_cast<double>(std::max<int64_t>(p.count - correction, 0));
  Tensor keep;
  {
    NoGradGuard no_grad;
    Tensor xd = x.detach();
    Tensor centered = sub(xd, mean(xd, p.dims, true));
    keep = div(sum(mul(centered, centered), p.dims, true), denom);
  }
  Tensor out = shaped(keep, p);
  if (needs_grad({&x})) {
    record("var", {x}, out,
           [sx = SavedTensor(x), dims = p.dims, keep_shape = p.keep_shape,
            denom](std::span<const Tensor> g) {
             const Tensor& xv = sx.get("var");
             Tensor centered = sub(xv, mean(xv, dims, true));
             Tensor scale = div(grad_keep(g[0], keep_shape), denom / 2.0);
             return std::vector<Tensor>{mul(centered, scale)};
           });
  }
  return out;
}

// --- argmax / argmin -----------------------------------------------------------------------------

namespace {

Tensor arg_extreme(const char* op, ArgReduceOp kind, const Tensor& x, std::optional<int64_t> dim,
                   bool keepdim) {
  detail::check_defined(op, x, "x");
  NoGradGuard no_grad;  // integer result: never on the tape
  Tensor xd = x.detach();
  if (!dim.has_value()) {
    RW_CHECK(x.numel() > 0, "{}: cannot take the {} of an empty tensor (shape {})", op, op,
             x.shape());
    Tensor flat = xd.reshape({x.numel()});
    Tensor out = empty({1}, {.dtype = DType::i64, .device = x.device()});
    detail::backend_of(x).arg_reduce(kind, flat, 0, out);
    // keepdim without a dim keeps x's rank with every extent 1, as PyTorch.
    return keepdim ? out.reshape(Shape(x.shape().size(), 1)) : out.reshape({});
  }
  int64_t d = normalize_dim(op, *dim, x.dim());
  if (x.dim() == 0) {
    return zeros({}, {.dtype = DType::i64, .device = x.device()});
  }
  RW_CHECK(x.shape()[d] != 0, "{}: cannot reduce over dim {} of extent 0 (shape {})", op, d,
           x.shape());
  Shape keep = x.shape();
  keep[d] = 1;
  Tensor out = empty(keep, {.dtype = DType::i64, .device = x.device()});
  if (out.numel() > 0) detail::backend_of(x).arg_reduce(kind, xd, d, out);
  return keepdim ? out : out.squeeze(d);
}

}  // namespace

Tensor argmax(const Tensor& x, std::optional<int64_t> dim, bool keepdim) {
  return arg_extreme("argmax", ArgReduceOp::argmax, x, dim, keepdim);
}

Tensor argmin(const Tensor& x, std::optional<int64_t> dim, bool keepdim) {
  return arg_extreme("argmin", ArgReduceOp::argmin, x, dim, keepdim);
}

// --- cumsum --------------------------------------------------------------------------------------

Tensor cumsum(const Tensor& x, int64_t dim) {
  detail::check_defined("cumsum", x, "x");
  int64_t d = normalize_dim("cumsum", dim, x.dim());
  DType dt = widened_integral(x.dtype());  // integer prefix sums are i64, as PyTorch
  Tensor out = empty(x.shape(), {.dtype = dt, .device = x.device()});
  if (x.numel() > 0) {
    NoGradGuard no_grad;
    // A 0-d tensor is a one-element row.
    Tensor xc = x.dim() == 0 ? x.detach().reshape({1}) : x.detach().contiguous();
    Tensor oc = x.dim() == 0 ? out.view({1}) : out;
    detail::backend_of(x).cumsum(xc, d, oc);
  }
  if (needs_grad({&x})) {
    // d/dx_i sum_{j<=k} x_j = [i <= k], so dx_i = sum_{k>=i} g_k: the reversed prefix sum, formed
    // as total - prefix + g (no flip needed).
    record("cumsum", {x}, out, [d, rank = x.dim()](std::span<const Tensor> g) {
      if (rank == 0) return std::vector<Tensor>{g[0]};
      Tensor total = sum(g[0], {d}, true);
      return std::vector<Tensor>{add(sub(total, cumsum(g[0], d)), g[0])};
    });
  }
  return out;
}

// --- sum_to --------------------------------------------------------------------------------------

Tensor sum_to(const Tensor& x, const Shape& shape) {
  detail::check_defined("sum_to", x, "x");
  if (x.shape() == shape) return x;
  const int64_t rank = x.dim();
  const auto target_rank = static_cast<int64_t>(shape.size());
  RW_CHECK(target_rank <= rank, "sum_to: cannot sum shape {} to {} (more dims)", x.shape(), shape);
  const int64_t lead = rank - target_rank;
  std::vector<int64_t> dims;
  for (int64_t d = 0; d < rank; ++d) {
    int64_t have = x.shape()[d];
    if (d < lead) {
      if (have != 1) dims.push_back(d);
      continue;
    }
    int64_t want = shape[d - lead];
    RW_CHECK(want == have || want == 1, "sum_to: cannot sum shape {} to {} (dim {}: {} vs {})",
             x.shape(), shape, d, have, want);
    if (want == 1 && have != 1) dims.push_back(d);
  }
  // Only extent-1 dims differ: a reshape, no arithmetic (and `dims` empty would mean "all").
  if (dims.empty()) return x.reshape(shape);
  return sum(x, dims, true).reshape(shape);
}

}  // namespace rw
