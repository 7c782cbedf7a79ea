#pragma once
// The CUDA backend: cuBLAS for matmul, rewind's own kernels for everything else. One instance per
// device; every kernel of a device runs on that device's stream (cuda_context.h), so results are
// ordered like the CPU backend's. Each kernel family's methods are defined in its own
// cuda_<family>.cpp (host side: Tensor -> TensorArg) with its kernels in <family>_kernels.cu.
#include "backends/backend.h"
#include "backends/cuda/tensor_arg.h"

namespace rw::cuda {

// The kernel view of a tensor on a CUDA device; `op` names the caller in the error raised when the
// tensor's rank, after merging dims that are contiguous with each other, exceeds kMaxDims.
TensorArg arg(const Tensor& t, const char* op);
// An undefined tensor (optional argument) gives a TensorArg with data == nullptr.
TensorArg arg_or_null(const Tensor& t, const char* op);

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(int device) : device_(device) {}
  const char* name() const override { return "cuda"; }
  int device() const { return device_; }

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

 private:
  int device_;
};

// Whether TF32 tensor cores may be used for f32 matmul (off by default: f32 results then match
// the CPU to f32 rounding). Process-wide, like torch.backends.cuda.matmul.allow_tf32.
void set_allow_tf32(bool allow);
bool allow_tf32();

}  // namespace rw::cuda
