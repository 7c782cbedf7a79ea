// rewind-demo: a 2-layer MLP learns to tell three interleaved spirals apart (a classic problem no
// linear model solves), trained with full-batch SGD written by hand: forward with rw ops,
// rw::backward, then in-place updates under NoGradGuard. Prints the loss falling; exits non-zero
// if it did not.
#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <numbers>
#include <vector>

#include "core/ops.h"

namespace {

struct Options {
  int64_t steps = 600;
  uint64_t seed = 0;
  double lr = 0.5;
  int64_t hidden = 64;
  int64_t points = 200;  // per class
  int64_t print_every = 50;
};

constexpr int64_t kClasses = 3;

struct Dataset {
  rw::Tensor x;  // [n, 2] f32
  rw::Tensor y;  // [n] i64
};

// Class k's points lie on an arm of a spiral, turned by k/3 of a full circle, with Gaussian noise
// on the angle.
Dataset make_spirals(int64_t points, rw::Generator& gen) {
  const int64_t n = points * kClasses;
  std::vector<float> noise = rw::randn({n}, gen).to_vector<float>();
  std::vector<float> xs(static_cast<std::size_t>(n) * 2);
  std::vector<int64_t> ys(static_cast<std::size_t>(n));
  for (int64_t k = 0; k < kClasses; ++k) {
    for (int64_t i = 0; i < points; ++i) {
      const int64_t j = k * points + i;
      const double r = static_cast<double>(i + 1) / static_cast<double>(points);
      const double t = 2 * std::numbers::pi * (static_cast<double>(k) / kClasses + 0.75 * r) +
                       0.2 * noise[static_cast<std::size_t>(j)];
      xs[2 * j] = static_cast<float>(r * std::sin(t));
      xs[2 * j + 1] = static_cast<float>(r * std::cos(t));
      ys[j] = k;
    }
  }
  return {rw::from_vector(xs, rw::Shape{n, 2}), rw::from_vector(ys)};
}

// He initialisation for layers followed by a ReLU; biases start at zero.
rw::Tensor init_weight(int64_t out, int64_t in, rw::Generator& gen) {
  rw::Tensor w = rw::normal({out, in}, 0.0, std::sqrt(2.0 / static_cast<double>(in)), gen);
  w.requires_grad_();
  return w;
}

int run(const Options& opt) {
  rw::Generator gen(opt.seed);
  Dataset data = make_spirals(opt.points, gen);
  rw::Tensor w1 = init_weight(opt.hidden, 2, gen);
  rw::Tensor b1 = rw::zeros({opt.hidden}, {.requires_grad = true});
  rw::Tensor w2 = init_weight(kClasses, opt.hidden, gen);
  rw::Tensor b2 = rw::zeros({kClasses}, {.requires_grad = true});
  const std::vector<rw::Tensor> params = {w1, b1, w2, b2};

  fmt::print(
      "rewind-demo: MLP 2 -> {} -> {} (ReLU) on {} points of 3 spirals, full-batch SGD, "
      "lr {}, seed {}\n",
      opt.hidden, kClasses, data.x.size(0), opt.lr, opt.seed);

  const auto start = std::chrono::steady_clock::now();
  double first_loss = 0, last_loss = 0, accuracy = 0;
  for (int64_t step = 0; step <= opt.steps; ++step) {
    rw::Tensor logits = rw::linear(rw::relu(rw::linear(data.x, w1, b1)), w2, b2);
    rw::Tensor loss = rw::cross_entropy(logits, data.y);
    last_loss = loss.item();
    if (step == 0) first_loss = last_loss;
    if (step % opt.print_every == 0 || step == opt.steps) {
      rw::NoGradGuard no_grad;
      rw::Tensor hits = rw::eq(rw::argmax(logits, -1), data.y).to(rw::DType::f32);
      accuracy = 100 * rw::mean(hits).item();
      fmt::print("step {:5}  loss {:.4f}  accuracy {:5.1f}%\n", step, last_loss, accuracy);
    }
    if (step == opt.steps) break;  // the last pass only measures

    rw::backward(loss);
    rw::NoGradGuard no_grad;  // the update itself must not be recorded
    for (const rw::Tensor& p : params) {
      rw::add_(p, p.grad(), -opt.lr);
      p.zero_grad();
    }
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  fmt::print("loss fell from {:.4f} to {:.4f} in {} steps ({:.2f} s); accuracy {:.1f}%\n",
             first_loss, last_loss, opt.steps, seconds, accuracy);
  if (!(last_loss < 0.8 * first_loss)) {
    fmt::print(stderr, "rewind-demo: the loss did not fall ({:.4f} -> {:.4f})\n", first_loss,
               last_loss);
    return 1;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  CLI::App app{"rewind-demo: train a small MLP on three spirals with rewind and print the loss"};
  app.add_option("--steps", opt.steps, "SGD steps")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--seed", opt.seed, "seed of the data and the initial weights")
      ->capture_default_str();
  app.add_option("--lr", opt.lr, "learning rate")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--hidden", opt.hidden, "hidden units")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--points", opt.points, "points per class")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--print-every", opt.print_every, "print the loss every N steps")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  try {
    return run(opt);
  } catch (const rw::Error& e) {
    fmt::print(stderr, "rewind-demo: error: {}\n", e.what());
    return 1;
  }
}
