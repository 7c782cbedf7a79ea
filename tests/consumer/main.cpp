// The README's code example, built as an outside project against the installed rewind package:
// a matmul, a loss, a backward, and the gradient checked against its closed form.
#include <cmath>
#include <vector>

#include "core/ops.h"  // the op API, tensors and autograd (installed under include/rewind/)

int main() {
  // loss = sum((x @ w)^2), so d loss / d w = x^T @ (2 x @ w).
  rw::Tensor x = rw::from_vector<float>({1, 2, 3, 4, 5, 6}, rw::Shape{2, 3});
  rw::Tensor w = rw::ones({3, 2}, {.requires_grad = true});
  rw::Tensor loss = rw::sum(rw::square(rw::matmul(x, w)));
  rw::backward(loss);
  fmt::print("loss = {}\ngrad of w =\n{}\n", loss.item(), w.grad());

  const std::vector<float> expected = {132, 132, 174, 174, 216, 216};
  std::vector<float> grad = w.grad().to_vector<float>();
  bool ok = std::abs(loss.item() - 522.0) < 1e-3 && grad.size() == expected.size();
  for (std::size_t i = 0; ok && i < grad.size(); ++i) ok = std::abs(grad[i] - expected[i]) < 1e-3;
  if (!ok) {
    fmt::print(stderr, "consumer: wrong result (expected loss 522 and grad 132 174 216)\n");
    return 1;
  }
  fmt::print("consumer: OK\n");
  return 0;
}
