// Ops that assemble or rearrange tensors. Forwards copy with the backend into slices of a fresh
// output (inside NoGradGuard, so the slicing records nothing) and record one node; split and chunk
// are views, differentiable through the view machinery.
#include "core/ops/shape_ops.h"

#include <algorithm>

#include "autograd/tape.h"
#include "core/ops/op_utils.h"

namespace rw {

// --- concat / stack ------------------------------------------------------------------------------

Tensor concat(const std::vector<Tensor>& tensors, int64_t dim) {
  RW_CHECK(!tensors.empty(), "concat: expected at least one tensor, got none");
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    detail::check_defined("concat", tensors[i], fmt::format("tensor {}", i));
    detail::check_same_device("concat", tensors[0], tensors[i]);
  }
  const Tensor& first = tensors[0];
  RW_CHECK(first.dim() > 0, "concat: cannot concatenate 0-d tensors (tensor 0 has shape {})",
           first.shape());
  const int64_t d = normalize_dim("concat", dim, first.dim());
  DType dt = first.dtype();
  Shape shape = first.shape();
  shape[d] = 0;
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const Tensor& t = tensors[i];
    bool same = t.dim() == first.dim();
    for (int64_t k = 0; same && k < t.dim(); ++k) {
      same = k == d || t.shape()[k] == first.shape()[k];
    }
    RW_CHECK(same,
             "concat: tensor {} has shape {} but tensor 0 has shape {}; they must match except in "
             "dim {}",
             i, t.shape(), first.shape(), d);
    shape[d] += t.shape()[d];
    dt = promote_types(dt, t.dtype());
  }
  Tensor out = empty(shape, {.dtype = dt, .device = first.device()});
  std::vector<int64_t> offsets;  // start of each input along d
  {
    NoGradGuard no_grad;
    int64_t offset = 0;
    for (const Tensor& t : tensors) {
      offsets.push_back(offset);
      int64_t n = t.shape()[d];
      if (n > 0 && t.numel() > 0) {
        detail::backend_of(t).copy(t.detach(), out.narrow(d, offset, n));
      }
      offset += n;
    }
  }
  if (needs_grad(std::span<const Tensor>(tensors))) {
    std::vector<int64_t> sizes;
    std::vector<DType> dtypes;
    std::vector<bool> wanted;
    for (const Tensor& t : tensors) {
      sizes.push_back(t.shape()[d]);
      dtypes.push_back(t.dtype());
      wanted.push_back(t.requires_grad());
    }
    record("concat", std::span<const Tensor>(tensors), std::span<const Tensor>(&out, 1),
           [d, offsets, sizes, dtypes, wanted](std::span<const Tensor> g) {
             std::vector<Tensor> grads(sizes.size());
             for (std::size_t i = 0; i < sizes.size(); ++i) {
               if (wanted[i]) grads[i] = g[0].narrow(d, offsets[i], sizes[i]).to(dtypes[i]);
             }
             return grads;
           });
  }
  return out;
}

Tensor stack(const std::vector<Tensor>& tensors, int64_t dim) {
  RW_CHECK(!tensors.empty(), "stack: expected at least one tensor, got none");
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    detail::check_defined("stack", tensors[i], fmt::format("tensor {}", i));
    RW_CHECK(tensors[i].shape() == tensors[0].shape(),
             "stack: tensor {} has shape {} but tensor 0 has shape {}; all must be equal", i,
             tensors[i].shape(), tensors[0].shape());
  }
  const int64_t d = normalize_dim("stack", dim, tensors[0].dim() + 1);
  std::vector<Tensor> expanded;
  expanded.reserve(tensors.size());
  for (const Tensor& t : tensors) expanded.push_back(t.unsqueeze(d));
  return concat(expanded, d);
}

// --- split / chunk -------------------------------------------------------------------------------

std::vector<Tensor> split(const Tensor& x, int64_t split_size, int64_t dim) {
  detail::check_defined("split", x, "x");
  RW_CHECK(x.dim() > 0, "split: cannot split a 0-d tensor");
  const int64_t d = normalize_dim("split", dim, x.dim());
  const int64_t n = x.shape()[d];
  RW_CHECK(split_size > 0 || (split_size == 0 && n == 0),
           "split: split_size must be positive, got {} (dim {} has extent {})", split_size, d, n);
  std::vector<Tensor> pieces;
  if (n == 0) {
    pieces.push_back(x.narrow(d, 0, 0));  // one empty piece, as torch.split
    return pieces;
  }
  for (int64_t start = 0; start < n; start += split_size) {
    pieces.push_back(x.narrow(d, start, std::min(split_size, n - start)));
  }
  return pieces;
}

std::vector<Tensor> chunk(const Tensor& x, int64_t chunks, int64_t dim) {
  detail::check_defined("chunk", x, "x");
  RW_CHECK(chunks > 0, "chunk: chunks must be positive, got {}", chunks);
  RW_CHECK(x.dim() > 0, "chunk: cannot chunk a 0-d tensor");
  const int64_t d = normalize_dim("chunk", dim, x.dim());
  const int64_t n = x.shape()[d];
  if (n == 0) {  // `chunks` empty pieces, as torch.chunk
    return std::vector<Tensor>(static_cast<std::size_t>(chunks), x.narrow(d, 0, 0));
  }
  // torch.chunk: pieces of ceil(n / chunks), so fewer than `chunks` may come back.
  return split(x, (n + chunks - 1) / chunks, d);
}

// --- pad -----------------------------------------------------------------------------------------

namespace {

// The part of x that survives padding/cropping, as ranges of x and of the padded output.
struct PadRegion {
  std::vector<int64_t> dims, x_start, out_start, len;
  bool empty = false;
};

// Narrows `t` to the region's ranges (x side or out side).
Tensor narrow_region(Tensor t, const PadRegion& r, bool out_side) {
  for (std::size_t i = 0; i < r.dims.size(); ++i) {
    t = t.narrow(r.dims[i], out_side ? r.out_start[i] : r.x_start[i], r.len[i]);
  }
  return t;
}

}  // namespace

Tensor pad(const Tensor& x, const std::vector<int64_t>& pads, double value) {
  detail::check_defined("pad", x, "x");
  RW_CHECK(pads.size() % 2 == 0, "pad: pads must come in (before, after) pairs, got {} values {}",
           pads.size(), pads);
  const auto pairs = static_cast<int64_t>(pads.size() / 2);
  RW_CHECK(pairs <= x.dim(), "pad: {} padded dims given for a tensor of rank {} (shape {})", pairs,
           x.dim(), x.shape());
  Shape shape = x.shape();
  PadRegion region;
  bool cropping = false;
  for (int64_t k = 0; k < pairs; ++k) {
    const int64_t d = x.dim() - 1 - k;  // pairs start from the last dim
    const int64_t before = pads[2 * k], after = pads[2 * k + 1];
    const int64_t n = x.shape()[d];
    shape[d] = n + before + after;
    RW_CHECK(shape[d] >= 0, "pad: pads ({}, {}) make dim {} of extent {} negative (shape {})",
             before, after, d, n, x.shape());
    cropping = cropping || before < 0 || after < 0;
    const int64_t x_start = std::max<int64_t>(0, -before);
    const int64_t len = n - x_start - std::max<int64_t>(0, -after);
    region.dims.push_back(d);
    region.x_start.push_back(x_start);
    region.out_start.push_back(std::max<int64_t>(0, before));
    region.len.push_back(std::max<int64_t>(len, 0));
    region.empty = region.empty || len <= 0;
  }
  region.empty = region.empty || x.numel() == 0;
  Tensor out = empty(shape, options_of(x));
  {
    NoGradGuard no_grad;
    if (out.numel() > 0) detail::backend_of(x).fill(out, value);
    if (!region.empty) {
      detail::backend_of(x).copy(narrow_region(x.detach(), region, false),
                                 narrow_region(out, region, true));
    }
  }
  if (needs_grad({&x})) {
    record("pad", {x}, out, [region, cropping, x_shape = x.shape()](std::span<const Tensor> g) {
      // Without cropping the gradient is a view of g; cropped elements get zeros.
      if (!cropping) return std::vector<Tensor>{narrow_region(g[0], region, true)};
      Tensor gx = zeros(x_shape, options_of(g[0]));
      if (!region.empty) {
        detail::backend_of(gx).copy(narrow_region(g[0], region, true),
                                    narrow_region(gx, region, false));
      }
      return std::vector<Tensor>{gx};
    });
  }
  return out;
}

// --- roll ----------------------------------------------------------------------------------------

Tensor roll(const Tensor& x, int64_t shift, int64_t dim) {
  detail::check_defined("roll", x, "x");
  const int64_t d = normalize_dim("roll", dim, x.dim());
  Tensor out = empty(x.shape(), options_of(x));
  {
    NoGradGuard no_grad;
    Tensor xd = x.detach();
    const int64_t n = x.dim() == 0 ? 1 : x.shape()[d];
    const int64_t s = n == 0 ? 0 : ((shift % n) + n) % n;
    if (x.numel() == 0) {
      // nothing to move
    } else if (s == 0 || x.dim() == 0) {
      detail::backend_of(x).copy(xd, out);
    } else {
      // out[s:] = x[:n-s], out[:s] = x[n-s:]
      detail::backend_of(x).copy(xd.narrow(d, 0, n - s), out.narrow(d, s, n - s));
      detail::backend_of(x).copy(xd.narrow(d, n - s, s), out.narrow(d, 0, s));
    }
  }
  if (needs_grad({&x})) {
    record("roll", {x}, out, [shift, d](std::span<const Tensor> g) {
      return std::vector<Tensor>{roll(g[0], -shift, d)};
    });
  }
  return out;
}

// --- tril / triu ---------------------------------------------------------------------------------

namespace {

Tensor triangle_mask(const char* op, int64_t rows, int64_t cols, int64_t k, bool lower,
                     Device device) {
  RW_CHECK(rows >= 0 && cols >= 0, "{}: rows and cols must be >= 0, got {} and {}", op, rows, cols);
  std::vector<bool> mask(static_cast<std::size_t>(rows * cols));
  for (int64_t i = 0; i < rows; ++i) {
    for (int64_t j = 0; j < cols; ++j) {
      mask[static_cast<std::size_t>(i * cols + j)] = lower ? j - i <= k : j - i >= k;
    }
  }
  return from_vector(mask, Shape{rows, cols}, device);
}

// x where mask (broadcast over the leading dims), else 0.
Tensor masked_keep(const Tensor& x, const Tensor& mask) {
  Tensor out = empty(x.shape(), options_of(x));
  if (out.numel() == 0) return out;
  NoGradGuard no_grad;
  Tensor zero = zeros({}, options_of(x));
  detail::backend_of(x).where(mask.expand(x.shape()), x.detach(), zero.expand(x.shape()), out);
  return out;
}

Tensor triangle(const char* op, const Tensor& x, int64_t k, bool lower) {
  detail::check_defined(op, x, "x");
  RW_CHECK(x.dim() >= 2, "{}: expected a tensor with at least 2 dims, got shape {}", op, x.shape());
  Tensor mask = triangle_mask(op, x.size(-2), x.size(-1), k, lower, x.device());
  Tensor out = masked_keep(x, mask);
  if (needs_grad({&x})) {
    // The mask is a plain bool tensor (no autograd metadata), so the closure may hold it.
    record(op, {x}, out, [mask](std::span<const Tensor> g) {
      return std::vector<Tensor>{masked_keep(g[0], mask)};
    });
  }
  return out;
}

}  // namespace

Tensor tril(const Tensor& x, int64_t k) { return triangle("tril", x, k, true); }
Tensor triu(const Tensor& x, int64_t k) { return triangle("triu", x, k, false); }

Tensor tril_mask(int64_t rows, int64_t cols, int64_t k, Device device) {
  return triangle_mask("tril_mask", rows, cols, k, true, device);
}
Tensor triu_mask(int64_t rows, int64_t cols, int64_t k, Device device) {
  return triangle_mask("triu_mask", rows, cols, k, false, device);
}

}  // namespace rw
