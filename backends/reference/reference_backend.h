#pragma once
// The float64 reference backend: the test oracle. Every kernel is the plainest possible
// single-threaded loop that reads each element (of any dtype, at any strides) as a double,
// computes in double and converts on the store. No oneDNN, no vectorisation, no cleverness: a
// kernel here should be obviously correct by reading it. Tests route the whole op layer to it
// with `BackendOverride(DeviceType::cpu, reference_backend())`, so composite ops (cross_entropy,
// var, ...) get a reference result too.
#include "backends/backend.h"

namespace rw {

class ReferenceBackend final : public Backend {
 public:
  const char* name() const override { return "reference"; }
  void copy(const Tensor& src, const Tensor& dst) override;
  void fill(const Tensor& dst, double value) override;
  void arange(const Tensor& out, double start, double step) override;
  void unary(UnaryOp op, const Tensor& x, const Tensor& out, UnaryParams params) override;
  void unary_backward(UnaryOp op, const Tensor& x, const Tensor& y, const Tensor& dy,
                      const Tensor& dx, UnaryParams params) override;
  void binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out) override;
  void where(const Tensor& cond, const Tensor& a, const Tensor& b, const Tensor& out) override;
  void reduce(ReduceOp op, const Tensor& x, const Tensor& out) override;
  void arg_reduce(ArgReduceOp op, const Tensor& x, int64_t dim, const Tensor& out) override;
  void cumsum(const Tensor& x, int64_t dim, const Tensor& out) override;
  void matmul(const Tensor& a, const Tensor& b, const Tensor& bias, const Tensor& out) override;
  void softmax(SoftmaxKind kind, const Tensor& x, int64_t dim, const Tensor& out) override;
  void softmax_backward(SoftmaxKind kind, const Tensor& y, const Tensor& dy, int64_t dim,
                        const Tensor& dx) override;
  void layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps,
                  const Tensor& out, const Tensor& mean, const Tensor& rstd) override;
  void layer_norm_backward(const Tensor& dy, const Tensor& x, const Tensor& weight,
                           const Tensor& mean, const Tensor& rstd, const Tensor& dx,
                           const Tensor& dweight, const Tensor& dbias) override;
  void gather(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& out) override;
  void scatter_add(const Tensor& dst, int64_t dim, const Tensor& index, const Tensor& src) override;
  void index_select(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& out) override;
  void index_add(const Tensor& dst, int64_t dim, const Tensor& index, const Tensor& src) override;
  void sort(const Tensor& x, int64_t dim, bool descending, const Tensor& values,
            const Tensor& indices) override;
  void random(RandomKind kind, PhiloxState state, double a, double b, const Tensor& out) override;
};

// The process-wide reference backend (stateless, so one instance serves every thread).
Backend& reference_backend();

}  // namespace rw
