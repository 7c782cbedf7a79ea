#include "core/tensor.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <numeric>

#include "autograd/tape.h"
#include "backends/backend.h"
#include "core/ops.h"
#include "core/ops/op_utils.h"

namespace rw {
namespace {

Tensor make_view(const Tensor& base, Shape shape, Strides strides, int64_t offset) {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = base.storage();
  impl->offset = offset;
  impl->shape = std::move(shape);
  impl->strides = std::move(strides);
  impl->dtype = base.dtype();
  return Tensor(std::move(impl));
}

// Strides for viewing `t` as `shape` without a copy, or empty when impossible (the algorithm
// of PyTorch's computeStride: each run of merged input dims must be contiguous in itself).
std::optional<Strides> view_strides(const Tensor& t, const Shape& shape) {
  const Shape& old_shape = t.shape();
  const Strides& old_strides = t.strides();
  if (t.numel() == 0 || old_shape.empty()) return contiguous_strides(shape);
  Strides out(shape.size());
  int64_t view_d = static_cast<int64_t>(shape.size()) - 1;
  int64_t chunk_base_stride = old_strides.back();
  int64_t tensor_numel = 1, view_numel = 1;
  for (int64_t d = static_cast<int64_t>(old_shape.size()) - 1; d >= 0; --d) {
    tensor_numel *= old_shape[d];
    if (d == 0 ||
        (old_shape[d - 1] != 1 && old_strides[d - 1] != tensor_numel * chunk_base_stride)) {
      while (view_d >= 0 && (view_numel < tensor_numel || shape[view_d] == 1)) {
        out[view_d] = view_numel * chunk_base_stride;
        view_numel *= shape[view_d];
        --view_d;
      }
      if (view_numel != tensor_numel) return std::nullopt;
      if (d > 0) {
        chunk_base_stride = old_strides[d - 1];
        tensor_numel = 1;
        view_numel = 1;
      }
    }
  }
  if (view_d != -1) return std::nullopt;
  return out;
}

Shape infer_shape(const char* op, Shape shape, int64_t numel, const Shape& from) {
  int64_t known = 1;
  int infer = -1;
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == -1) {
      RW_CHECK(infer < 0, "{}: more than one -1 in shape {}", op, shape);
      infer = static_cast<int>(i);
    } else {
      RW_CHECK(shape[i] >= 0, "{}: negative extent in shape {}", op, shape);
      known *= shape[i];
    }
  }
  if (infer >= 0) {
    RW_CHECK(known != 0 && numel % known == 0,
             "{}: cannot infer -1 in shape {} for {} elements (from shape {})", op, shape, numel,
             from);
    shape[infer] = numel / known;
  }
  RW_CHECK(shape_numel(shape) == numel,
           "{}: shape {} has {} elements, the tensor (shape {}) has {}", op, shape,
           shape_numel(shape), from, numel);
  return shape;
}

// Records `out` as a view-like function of `in` whose gradient is `backward(g)`.
template <typename F>
void record_unary(const char* name, const Tensor& in, const Tensor& out, F backward) {
  if (!needs_grad({&in})) return;
  record(name, {in}, out,
         [backward](std::span<const Tensor> g) -> std::vector<Tensor> { return {backward(g[0])}; });
}

Tensor copy_as(const Tensor& src, DType dtype, Device device) {
  Tensor out = empty(src.shape(), {.dtype = dtype, .device = device});
  if (src.numel() == 0) return out;
  // Host <-> device copies are done by the non-CPU side's backend.
  Device exec = src.device().is_cpu() ? device : src.device();
  backend_for(exec).copy(src, out);
  return out;
}

// normalize_dim for ops that index into a dim: a 0-dim tensor has none (normalize_dim accepts
// 0 and -1 for rank 0, which would index past the empty shape).
int64_t existing_dim(const char* op, int64_t d, int64_t rank) {
  RW_CHECK(rank > 0, "{}: dim {} given for a 0-dim tensor, which has no dims", op, d);
  return normalize_dim(op, d, rank);
}

}  // namespace

int64_t Tensor::size(int64_t d) const { return shape()[existing_dim("size", d, dim())]; }
int64_t Tensor::stride(int64_t d) const { return strides()[existing_dim("stride", d, dim())]; }
int64_t Tensor::numel() const { return shape_numel(shape()); }

void* Tensor::data_ptr() const {
  return static_cast<char*>(storage()->data()) +
         offset() * static_cast<int64_t>(dtype_size(dtype()));
}

// --- views
// ----------------------------------------------------------------------------------------

Tensor Tensor::view(Shape new_shape) const {
  new_shape = infer_shape("view", std::move(new_shape), numel(), shape());
  auto st = view_strides(*this, new_shape);
  RW_CHECK(st.has_value(),
           "view: cannot view a tensor of shape {} and strides {} as shape {} without a copy; "
           "use reshape()",
           shape(), strides(), new_shape);
  Tensor out = make_view(*this, new_shape, *st, offset());
  record_unary("view", *this, out, [s = shape()](const Tensor& g) { return g.reshape(s); });
  return out;
}

Tensor Tensor::reshape(Shape new_shape) const {
  new_shape = infer_shape("reshape", std::move(new_shape), numel(), shape());
  if (view_strides(*this, new_shape).has_value()) return view(std::move(new_shape));
  return contiguous().view(std::move(new_shape));
}

Tensor Tensor::flatten(int64_t start_dim, int64_t end_dim) const {
  if (dim() == 0) return reshape({1});
  int64_t s = normalize_dim("flatten", start_dim, dim());
  int64_t e = normalize_dim("flatten", end_dim, dim());
  RW_CHECK(s <= e, "flatten: start_dim {} is after end_dim {}", start_dim, end_dim);
  Shape ns(shape().begin(), shape().begin() + s);
  int64_t n = 1;
  for (int64_t i = s; i <= e; ++i) n *= shape()[i];
  ns.push_back(n);
  ns.insert(ns.end(), shape().begin() + e + 1, shape().end());
  return reshape(ns);
}

Tensor Tensor::permute(std::vector<int64_t> dims) const {
  RW_CHECK(static_cast<int64_t>(dims.size()) == dim(),
           "permute: {} dims given for a tensor of rank {}", dims.size(), dim());
  std::vector<bool> seen(dims.size(), false);
  Shape ns(dims.size());
  Strides nst(dims.size());
  for (std::size_t i = 0; i < dims.size(); ++i) {
    int64_t d = normalize_dim("permute", dims[i], dim());
    RW_CHECK(!seen[d], "permute: dim {} repeats in {}", d, dims);
    seen[d] = true;
    dims[i] = d;
    ns[i] = shape()[d];
    nst[i] = strides()[d];
  }
  Tensor out = make_view(*this, ns, nst, offset());
  std::vector<int64_t> inverse(dims.size());
  for (std::size_t i = 0; i < dims.size(); ++i) inverse[dims[i]] = static_cast<int64_t>(i);
  record_unary("permute", *this, out, [inverse](const Tensor& g) { return g.permute(inverse); });
  return out;
}

Tensor Tensor::transpose(int64_t d0, int64_t d1) const {
  if (dim() == 0) {  // as PyTorch: transpose(0, 0) of a 0-dim tensor is the tensor itself
    normalize_dim("transpose", d0, 0);
    normalize_dim("transpose", d1, 0);
    return *this;
  }
  std::vector<int64_t> dims(dim());
  std::iota(dims.begin(), dims.end(), 0);
  std::swap(dims[normalize_dim("transpose", d0, dim())],
            dims[normalize_dim("transpose", d1, dim())]);
  return permute(dims);
}

Tensor Tensor::slice(int64_t d, int64_t start, int64_t end, int64_t step) const {
  d = existing_dim("slice", d, dim());
  RW_CHECK(step > 0, "slice: step must be positive, got {}", step);
  int64_t n = shape()[d];
  if (start < 0) start += n;
  if (end < 0) end += n;
  start = std::clamp<int64_t>(start, 0, n);
  end = std::clamp<int64_t>(end, start, n);
  Shape ns = shape();
  Strides nst = strides();
  ns[d] = (end - start + step - 1) / step;
  nst[d] = strides()[d] * step;
  Tensor out = make_view(*this, ns, nst, offset() + start * strides()[d]);
  record_unary("slice", *this, out, [s = shape(), d, start, end, step](const Tensor& g) {
    Tensor gi = zeros(s, options_of(g));
    backend_for(g.device()).copy(g, gi.slice(d, start, end, step));
    return gi;
  });
  return out;
}

Tensor Tensor::narrow(int64_t d, int64_t start, int64_t length) const {
  int64_t nd = existing_dim("narrow", d, dim());
  int64_t n = shape()[nd];
  if (start < 0) start += n;
  RW_CHECK(start >= 0 && length >= 0 && start + length <= n,
           "narrow: [{}, {}) is out of range for dim {} of extent {} (shape {})", start,
           start + length, d, n, shape());
  return slice(nd, start, start + length);
}

Tensor Tensor::select(int64_t d, int64_t index) const {
  int64_t nd = existing_dim("select", d, dim());
  int64_t n = shape()[nd];
  RW_CHECK(index >= -n && index < n, "select: index {} out of range for dim {} of extent {}", index,
           d, n);
  if (index < 0) index += n;
  return narrow(nd, index, 1).squeeze(nd);
}

Tensor Tensor::expand(Shape target) const {
  RW_CHECK(target.size() >= shape().size(), "expand: cannot expand shape {} to {} (fewer dims)",
           shape(), target);
  std::size_t lead = target.size() - shape().size();
  Strides nst(target.size(), 0);
  for (std::size_t i = 0; i < target.size(); ++i) {
    if (i < lead) {
      RW_CHECK(target[i] >= 0, "expand: new leading dim {} must be given, got {}", i, target[i]);
      continue;
    }
    int64_t have = shape()[i - lead];
    if (target[i] == -1) target[i] = have;
    RW_CHECK(target[i] >= 0, "expand: cannot expand shape {} to {} (negative extent at dim {})",
             shape(), target, i);
    RW_CHECK(have == target[i] || have == 1,
             "expand: cannot expand shape {} to {} (dim {}: {} vs {})", shape(), target, i, have,
             target[i]);
    nst[i] = have == target[i] ? strides()[i - lead] : 0;
  }
  if (target == shape()) return *this;
  Tensor out = make_view(*this, target, nst, offset());
  record_unary("expand", *this, out, [s = shape()](const Tensor& g) { return sum_to(g, s); });
  return out;
}

Tensor Tensor::squeeze() const {
  Shape ns;
  for (int64_t e : shape()) {
    if (e != 1) ns.push_back(e);
  }
  return ns.size() == shape().size() ? *this : reshape(ns);
}

Tensor Tensor::squeeze(int64_t d) const {
  d = normalize_dim("squeeze", d, dim());
  if (dim() == 0 || shape()[d] != 1) return *this;
  Shape ns = shape();
  ns.erase(ns.begin() + d);
  return reshape(ns);
}

Tensor Tensor::unsqueeze(int64_t d) const {
  d = normalize_dim("unsqueeze", d, dim() + 1);
  Shape ns = shape();
  ns.insert(ns.begin() + d, 1);
  return reshape(ns);
}

// --- copies -------------------------------------------------------------------------------------

Tensor Tensor::contiguous() const { return is_contiguous() ? *this : clone(); }

Tensor Tensor::clone() const {
  Tensor out = copy_as(*this, dtype(), device());
  record_unary("clone", *this, out, [](const Tensor& g) { return g; });
  return out;
}

Tensor Tensor::to(Device target) const {
  if (target == device()) return *this;
  Tensor out = copy_as(*this, dtype(), target);
  record_unary("to(device)", *this, out, [d = device()](const Tensor& g) { return g.to(d); });
  return out;
}

Tensor Tensor::to(DType target) const {
  if (target == dtype()) return *this;
  Tensor out = copy_as(*this, target, device());
  if (is_floating(target)) {
    record_unary("to(dtype)", *this, out, [t = dtype()](const Tensor& g) { return g.to(t); });
  }
  return out;
}

Tensor Tensor::detach() const { return make_view(*this, shape(), strides(), offset()); }

// --- autograd -----------------------------------------------------------------------------------

bool Tensor::requires_grad() const { return impl().autograd != nullptr; }

bool Tensor::is_leaf() const { return impl().autograd == nullptr || impl().autograd->is_leaf; }

Tensor& Tensor::requires_grad_(bool enabled) {
  if (!enabled) {
    RW_CHECK(is_leaf(), "requires_grad_(false): only a leaf can stop requiring grad; use detach()");
    impl().autograd = nullptr;
    return *this;
  }
  RW_CHECK(is_floating(dtype()), "requires_grad_: only floating tensors can require grad, got {}",
           dtype());
  if (impl().autograd == nullptr) {
    static std::atomic<uint64_t> next_leaf_id{uint64_t{1} << 62};
    impl().autograd = std::make_shared<AutogradMeta>();
    impl().autograd->id = next_leaf_id.fetch_add(1, std::memory_order_relaxed);
  }
  return *this;
}

Tensor Tensor::grad() const {
  auto& meta = impl().autograd;
  return meta != nullptr ? meta->grad : Tensor();
}

void Tensor::set_grad(const Tensor& g) const {
  RW_CHECK(is_leaf() && requires_grad(), "set_grad: only a leaf that requires grad has a grad");
  if (g.defined()) {
    RW_CHECK(g.shape() == shape(), "set_grad: gradient shape {} differs from tensor shape {}",
             g.shape(), shape());
  }
  impl().autograd->grad = g;
}

void Tensor::zero_grad() const {
  if (impl().autograd != nullptr) impl().autograd->grad = Tensor();
}

// --- element access -----------------------------------------------------------------------------

template <typename T>
std::vector<T> Tensor::to_vector() const {
  NoGradGuard no_grad;
  Tensor host = to(Device::cpu()).to(dtype_of_v<T>).contiguous();
  const auto* begin = static_cast<const T*>(host.data_ptr());
  return std::vector<T>(begin, begin + host.numel());
}

template <typename T>
T Tensor::item() const {
  RW_CHECK(numel() == 1, "item: tensor of shape {} has {} elements, expected 1", shape(), numel());
  return to_vector<T>()[0];
}

#define RW_INSTANTIATE_ACCESS(T)                        \
  template std::vector<T> Tensor::to_vector<T>() const; \
  template T Tensor::item<T>() const;
RW_INSTANTIATE_ACCESS(float)
RW_INSTANTIATE_ACCESS(double)
RW_INSTANTIATE_ACCESS(int32_t)
RW_INSTANTIATE_ACCESS(int64_t)
RW_INSTANTIATE_ACCESS(uint8_t)
RW_INSTANTIATE_ACCESS(bool)
#undef RW_INSTANTIATE_ACCESS

std::string Tensor::str() const {
  if (!defined()) return "tensor(undefined)";
  std::vector<double> v = to_vector<double>();
  std::string body;
  constexpr int64_t kEdge = 3;  // elements shown at each end of a long dim
  const Shape& s = shape();
  auto fmt_value = [&](double x) {
    return is_floating(dtype()) ? fmt::format("{:.6g}", x)
                                : fmt::format("{}", static_cast<int64_t>(x));
  };
  // Recursive print of dim d starting at flat index base.
  auto print = [&](auto& self, std::size_t d, int64_t base, int64_t stride) -> void {
    if (d == s.size()) {
      body += fmt_value(v[base]);
      return;
    }
    int64_t n = s[d];
    int64_t inner = stride / std::max<int64_t>(n, 1);
    body += '[';
    for (int64_t i = 0; i < n; ++i) {
      if (n > 2 * kEdge && i == kEdge) {
        body += "..., ";
        i = n - kEdge;
      }
      self(self, d + 1, base + i * inner, inner);
      if (i + 1 < n) body += d + 1 == s.size() ? ", " : ",\n ";
    }
    body += ']';
  };
  print(print, 0, 0, numel());
  return fmt::format("tensor({}, shape={}, dtype={}, device={}{})", body, s, dtype(), device(),
                     requires_grad() ? ", requires_grad" : "");
}

// --- factories ----------------------------------------------------------------------------------

Tensor empty_strided(Shape shape, Strides strides, TensorOptions options) {
  RW_CHECK(shape.size() == strides.size(), "empty_strided: shape {} and strides {} differ in rank",
           shape, strides);
  int64_t numel = shape_numel(shape);
  int64_t span = numel == 0 ? 0 : 1;
  for (std::size_t i = 0; i < shape.size() && numel > 0; ++i) {
    RW_CHECK(strides[i] >= 0, "empty_strided: negative stride in {}", strides);
    span += (shape[i] - 1) * strides[i];
  }
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::make_shared<Storage>(
      static_cast<std::size_t>(span) * dtype_size(options.dtype), options.device);
  impl->shape = std::move(shape);
  impl->strides = std::move(strides);
  impl->dtype = options.dtype;
  Tensor t(std::move(impl));
  if (options.requires_grad) t.requires_grad_();
  return t;
}

Tensor empty(Shape shape, TensorOptions options) {
  Strides st = contiguous_strides(shape);
  return empty_strided(std::move(shape), std::move(st), options);
}

Tensor empty_like(const Tensor& t) { return empty(t.shape(), options_of(t)); }

Tensor full(Shape shape, double value, TensorOptions options) {
  bool rg = options.requires_grad;
  options.requires_grad = false;
  Tensor t = empty(std::move(shape), options);
  if (t.numel() > 0) backend_for(t.device()).fill(t, value);
  if (rg) t.requires_grad_();
  return t;
}

Tensor zeros(Shape shape, TensorOptions options) { return full(std::move(shape), 0, options); }
Tensor ones(Shape shape, TensorOptions options) { return full(std::move(shape), 1, options); }
Tensor zeros_like(const Tensor& t) { return full(t.shape(), 0, options_of(t)); }
Tensor ones_like(const Tensor& t) { return full(t.shape(), 1, options_of(t)); }
Tensor full_like(const Tensor& t, double value) { return full(t.shape(), value, options_of(t)); }
Tensor scalar_tensor(double value, TensorOptions options) { return full({}, value, options); }

Tensor arange(double start, double end, double step, TensorOptions options) {
  RW_CHECK(step != 0, "arange: step must be non-zero");
  RW_CHECK((end - start) / step < 9.2e18, "arange: too many elements");
  auto n = static_cast<int64_t>(std::max(0.0, std::ceil((end - start) / step)));
  Tensor t = empty({n}, options);
  if (n > 0) backend_for(t.device()).arange(t, start, step);
  return t;
}

Tensor arange(int64_t end, TensorOptions options) {
  return arange(0.0, static_cast<double>(end), 1.0, options);
}

Tensor from_blob_copy(const void* data, Shape shape, DType dtype, Device device) {
  Tensor host = empty(std::move(shape), {.dtype = dtype});
  if (host.nbytes() > 0) std::memcpy(host.data_ptr(), data, host.nbytes());
  return host.to(device);
}

template <typename T>
Tensor from_vector(const std::vector<T>& values, std::optional<Shape> shape, Device device) {
  Shape s = shape.value_or(Shape{static_cast<int64_t>(values.size())});
  RW_CHECK(shape_numel(s) == static_cast<int64_t>(values.size()),
           "from_vector: {} values do not fill shape {}", values.size(), s);
  if constexpr (std::is_same_v<T, bool>) {
    std::vector<uint8_t> bytes(values.begin(), values.end());
    return from_blob_copy(bytes.data(), std::move(s), DType::boolean, device);
  } else {
    return from_blob_copy(values.data(), std::move(s), dtype_of_v<T>, device);
  }
}

#define RW_INSTANTIATE_FROM(T) \
  template Tensor from_vector<T>(const std::vector<T>&, std::optional<Shape>, Device);
RW_INSTANTIATE_FROM(float)
RW_INSTANTIATE_FROM(double)
RW_INSTANTIATE_FROM(int32_t)
RW_INSTANTIATE_FROM(int64_t)
RW_INSTANTIATE_FROM(uint8_t)
RW_INSTANTIATE_FROM(bool)
#undef RW_INSTANTIATE_FROM

}  // namespace rw
