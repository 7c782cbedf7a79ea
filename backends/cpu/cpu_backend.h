#pragma once
// The CPU backend, the reference every other backend is tested against. f32 runs on oneDNN
// primitives (matmul, softmax, layer normalisation, ...) cached by descriptor; other dtypes and the
// ops oneDNN lacks run on OpenMP loops. Each kernel family lives in its own cpu_*.cpp file.
#include "backends/backend.h"

namespace rw {

class CpuBackend final : public Backend {
 public:
  const char* name() const override { return "cpu"; }
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

}  // namespace rw
