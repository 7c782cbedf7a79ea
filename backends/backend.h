#pragma once
// The Backend interface: one virtual method per kernel family, selected by op enums, so a new op
// in an existing family touches no interface. Ops validate arguments, promote dtypes, broadcast
// and allocate outputs in the op layer (core/ops); a backend only computes.
//
// Contract for every method: all tensors live on this backend's device; `out` tensors are
// allocated by the op layer, contiguous, and of the documented shape and dtype. Inputs may be
// strided (including stride-0 broadcast views) unless a method says "contiguous".
#include <cstdint>

#include "backends/backend_ops.h"
#include "core/philox.h"
#include "core/tensor.h"

namespace rw {

class Backend {
 public:
  virtual ~Backend() = default;
  virtual const char* name() const = 0;

  // dst = src elementwise (same shape), converting dtype; dst may be strided.
  virtual void copy(const Tensor& src, const Tensor& dst) = 0;
  virtual void fill(const Tensor& dst, double value) = 0;  // dst may be strided
  // out[i] = start + i * step (out is 1-D).
  virtual void arange(const Tensor& out, double start, double step) = 0;

  virtual void unary(UnaryOp op, const Tensor& x, const Tensor& out, UnaryParams params) = 0;
  // dx = dy * d op(x)/dx; y = op(x) is given for ops whose derivative is cheaper from it.
  // All four have the same shape; x, y, dy contiguous. The op layer saves only what the
  // derivative reads: y for exp, sqrt, rsqrt, reciprocal, tanh, sigmoid (x is then undefined),
  // x for every other op (y is then undefined).
  virtual void unary_backward(UnaryOp op, const Tensor& x, const Tensor& y, const Tensor& dy,
                              const Tensor& dx, UnaryParams params) = 0;
  // a and b are already broadcast to out's shape (stride-0 views) and of one dtype.
  virtual void binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out) = 0;
  // cond (bool), a, b broadcast to out's shape; a, b of out's dtype.
  virtual void where(const Tensor& cond, const Tensor& a, const Tensor& b, const Tensor& out) = 0;

  virtual void reduce(ReduceOp op, const Tensor& x, const Tensor& out) = 0;
  // out: x's shape with extent 1 at dim, i64.
  virtual void arg_reduce(ArgReduceOp op, const Tensor& x, int64_t dim, const Tensor& out) = 0;
  // Inclusive prefix sum along dim; x contiguous.
  virtual void cumsum(const Tensor& x, int64_t dim, const Tensor& out) = 0;

  // out[..., M, N] = a[..., M, K] @ b[..., K, N] (+ bias[N]). a, b, out have the same rank >= 2;
  // each batch dim of a and b equals out's or is 1 (broadcast). The last two dims of a and b
  // may have any strides (transposed views); out is contiguous; bias (optional, may be
  // undefined) is contiguous 1-D of extent N.
  virtual void matmul(const Tensor& a, const Tensor& b, const Tensor& bias, const Tensor& out) = 0;

  // Along `dim` (x contiguous).
  virtual void softmax(SoftmaxKind kind, const Tensor& x, int64_t dim, const Tensor& out) = 0;
  // dx from the forward output y and dy (all contiguous).
  virtual void softmax_backward(SoftmaxKind kind, const Tensor& y, const Tensor& dy, int64_t dim,
                                const Tensor& dx) = 0;
  // Normalises the last dim of contiguous x [rows, D]; weight and bias (optional, may be
  // undefined) are [D]; mean and rstd are f32/f64 [rows] outputs saved for backward.
  virtual void layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps,
                          const Tensor& out, const Tensor& mean, const Tensor& rstd) = 0;
  // dweight and dbias may be undefined (not needed).
  virtual void layer_norm_backward(const Tensor& dy, const Tensor& x, const Tensor& weight,
                                   const Tensor& mean, const Tensor& rstd, const Tensor& dx,
                                   const Tensor& dweight, const Tensor& dbias) = 0;

  // out[i][j][k] = x[i][index[i][j][k]][k] for dim 1 (index i64, out index's shape; x, index
  // contiguous; indices already range-checked by the op layer).
  virtual void gather(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& out) = 0;
  // dst[i][index[i][j][k]][k] += src[i][j][k] for dim 1 (in place; dst, index, src contiguous).
  virtual void scatter_add(const Tensor& dst, int64_t dim, const Tensor& index,
                           const Tensor& src) = 0;
  // out = x taken at `index` (1-D i64) along dim (x contiguous).
  virtual void index_select(const Tensor& x, int64_t dim, const Tensor& index,
                            const Tensor& out) = 0;
  // dst.index(dim, index[i]) += src.index(dim, i) (in place; contiguous).
  virtual void index_add(const Tensor& dst, int64_t dim, const Tensor& index,
                         const Tensor& src) = 0;
  // Stable sort along dim (x contiguous); values like x, indices i64. Ties keep input order;
  // NaNs sort last (first when descending).
  virtual void sort(const Tensor& x, int64_t dim, bool descending, const Tensor& values,
                    const Tensor& indices) = 0;

  // Fills out (contiguous) from the Philox stream at `state`: element i uses block
  // state.counter + i / 4 (see core/philox.h for the exact mapping).
  virtual void random(RandomKind kind, PhiloxState state, double a, double b,
                      const Tensor& out) = 0;
};

// The backend of a device. Throws rw::Error naming the device when none is available.
Backend& backend_for(Device device);
void register_backend(DeviceType type, Backend* backend);

// Routes a device type to another backend for this thread while alive (tests run the op layer on
// the float64 reference backend this way).
class BackendOverride {
 public:
  BackendOverride(DeviceType type, Backend& backend);
  ~BackendOverride();
  BackendOverride(const BackendOverride&) = delete;
  BackendOverride& operator=(const BackendOverride&) = delete;

 private:
  DeviceType type_;
  Backend* previous_;
};

}  // namespace rw
