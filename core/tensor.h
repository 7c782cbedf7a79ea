#pragma once
// Tensor: a cheap handle (shared_ptr to an impl) to a strided view of a Storage.
// Views (reshape, transpose, narrow, expand, ...) share storage and are differentiable.
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/device.h"
#include "core/dtype.h"
#include "core/error.h"
#include "core/shape.h"
#include "core/storage.h"

namespace rw {

struct AutogradMeta;  // autograd/tape.h

struct TensorOptions {
  DType dtype = DType::f32;
  Device device = Device::cpu();
  bool requires_grad = false;
};

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  int64_t offset = 0;  // in elements
  Shape shape;
  Strides strides;
  DType dtype = DType::f32;
  // Non-null when the tensor takes part in autograd: a leaf that requires grad, or the output
  // of a recorded op.
  std::shared_ptr<AutogradMeta> autograd;
};

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const { return impl().shape; }
  const Strides& strides() const { return impl().strides; }
  int64_t dim() const { return static_cast<int64_t>(impl().shape.size()); }
  int64_t size(int64_t d) const;  // negative d counts from the end
  int64_t stride(int64_t d) const;
  int64_t numel() const;
  DType dtype() const { return impl().dtype; }
  Device device() const { return impl().storage->device(); }
  int64_t offset() const { return impl().offset; }
  std::size_t nbytes() const { return static_cast<std::size_t>(numel()) * dtype_size(dtype()); }
  bool is_contiguous() const { return is_contiguous_layout(shape(), strides()); }
  const std::shared_ptr<Storage>& storage() const { return impl().storage; }
  // Pointer to the first element (storage data + offset).
  void* data_ptr() const;
  template <typename T>
  T* data() const {
    RW_CHECK(dtype_of_v<T> == dtype(), "data<{}>(): tensor has dtype {}", dtype_of_v<T>, dtype());
    return static_cast<T*>(data_ptr());
  }
  TensorImpl& impl() const {
    RW_CHECK(impl_ != nullptr, "use of an undefined tensor");
    return *impl_;
  }
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }
  bool is_same(const Tensor& other) const { return impl_ == other.impl_; }

  // --- views (share storage; differentiable) -------------------------------------------------
  Tensor reshape(Shape shape) const;  // a view when the strides allow, else a copy; -1 infers
  Tensor view(Shape shape) const;     // always a view; error when the strides do not allow it
  Tensor flatten(int64_t start_dim = 0, int64_t end_dim = -1) const;
  Tensor transpose(int64_t d0, int64_t d1) const;
  Tensor permute(std::vector<int64_t> dims) const;
  Tensor mT() const { return transpose(-2, -1); }
  Tensor narrow(int64_t dim, int64_t start, int64_t length) const;
  Tensor slice(int64_t dim, int64_t start, int64_t end, int64_t step = 1) const;
  Tensor select(int64_t dim, int64_t index) const;  // removes dim
  Tensor expand(Shape shape) const;                 // -1 keeps a dim
  Tensor broadcast_to(Shape shape) const { return expand(std::move(shape)); }
  Tensor squeeze() const;
  Tensor squeeze(int64_t dim) const;
  Tensor unsqueeze(int64_t dim) const;

  // --- copies ----------------------------------------------------------------------------------
  Tensor contiguous() const;  // this when already contiguous
  Tensor clone() const;
  Tensor to(Device device) const;  // this when already there
  Tensor to(DType dtype) const;    // this when already that dtype
  // Same data, cut from the autograd graph.
  Tensor detach() const;

  // --- autograd --------------------------------------------------------------------------------
  bool requires_grad() const;
  // Marks a leaf as requiring grad (error on a non-leaf or an integer dtype). Returns *this.
  Tensor& requires_grad_(bool enabled = true);
  bool is_leaf() const;
  // Accumulated gradient of a leaf; undefined until a backward reaches it.
  Tensor grad() const;
  void set_grad(const Tensor& grad) const;
  void zero_grad() const;  // drops the gradient (like set_to_none)

  // --- element access (for tests and tools; copies to the CPU) --------------------------------
  template <typename T>
  std::vector<T> to_vector() const;
  template <typename T>
  T item() const;
  double item() const { return item<double>(); }
  std::string str() const;

 private:
  std::shared_ptr<TensorImpl> impl_;
};

// --- factories -----------------------------------------------------------------------------------
Tensor empty(Shape shape, TensorOptions options = {});
Tensor empty_like(const Tensor& t);
Tensor empty_strided(Shape shape, Strides strides, TensorOptions options = {});
Tensor full(Shape shape, double value, TensorOptions options = {});
Tensor zeros(Shape shape, TensorOptions options = {});
Tensor ones(Shape shape, TensorOptions options = {});
Tensor zeros_like(const Tensor& t);
Tensor ones_like(const Tensor& t);
Tensor full_like(const Tensor& t, double value);
Tensor scalar_tensor(double value, TensorOptions options = {});  // 0-dim
// [start, end) with step; dtype defaults to i64 for arange(n) style use.
Tensor arange(double start, double end, double step = 1,
              TensorOptions options = {.dtype = DType::i64});
Tensor arange(int64_t end, TensorOptions options = {.dtype = DType::i64});
// Copies host values into a new tensor of T's dtype; shape defaults to 1-D [values.size()].
template <typename T>
Tensor from_vector(const std::vector<T>& values, std::optional<Shape> shape = std::nullopt,
                   Device device = Device::cpu());
Tensor from_blob_copy(const void* data, Shape shape, DType dtype, Device device = Device::cpu());

// Options of an existing tensor (dtype and device; requires_grad false).
inline TensorOptions options_of(const Tensor& t) {
  return {.dtype = t.dtype(), .device = t.device()};
}

}  // namespace rw

template <>
struct fmt::formatter<rw::Tensor> : fmt::formatter<std::string_view> {
  auto format(const rw::Tensor& t, format_context& ctx) const {
    return fmt::formatter<std::string_view>::format(t.str(), ctx);
  }
};
