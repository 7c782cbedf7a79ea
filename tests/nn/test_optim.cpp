// Optimizers (nn/sgd.h, nn/adam.h, nn/adafactor.h) and gradient clipping (nn/clip_grad.h).
// Each optimizer's first steps are checked against its update rule written out here on plain
// doubles (never by calling the library); a tiny MLP overfits a fixed dataset with each of them;
// state_dict round trips resume bit-exactly; load errors name the offending keys.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "autograd/tape.h"
#include "core/ops.h"
#include "nn/adafactor.h"
#include "nn/adam.h"
#include "nn/clip_grad.h"
#include "nn/lr_schedule.h"
#include "nn/module.h"
#include "nn/sgd.h"
#include "test_util.h"

namespace rw::nn {

using namespace rw::test;

namespace {

using Vec = std::vector<double>;

Tensor param64(Vec values, Shape shape) {
  Tensor t = f64(std::move(values), std::move(shape));
  t.requires_grad_();
  return t;
}

void give_grad(const Tensor& p, const Vec& g) { p.set_grad(from_vector<double>(g, p.shape())); }

// --- a tiny model built from ops, with dotted parameter names -----------------------------------

class Affine : public Module {
 public:
  Affine(int64_t in, int64_t out, Generator& gen) {
    const double bound = 1 / std::sqrt(static_cast<double>(in));
    weight = uniform({out, in}, -bound, bound, gen);
    bias = uniform({out}, -bound, bound, gen);
    register_parameter("weight", weight);
    register_parameter("bias", bias);
  }
  std::string type_name() const override { return "Affine"; }
  Tensor forward(const Tensor& x) override { return linear(x, weight, bias); }
  Tensor weight, bias;
};

class TinyMlp : public Module {
 public:
  explicit TinyMlp(uint64_t seed) {
    Generator gen(seed);
    hidden = register_module("hidden", std::make_shared<Affine>(2, 16, gen));
    out = register_module("out", std::make_shared<Affine>(16, 1, gen));
  }
  std::string type_name() const override { return "TinyMlp"; }
  Tensor forward(const Tensor& x) override { return out->forward(tanh(hidden->forward(x))); }
  std::shared_ptr<Affine> hidden, out;
};

// Eight fixed points of a smooth function of two inputs.
struct Dataset {
  Tensor x, y;
};
Dataset tiny_dataset() {
  std::vector<float> xs, ys;
  for (int k = 0; k < 8; ++k) {
    const double a = std::cos(0.9 * k), b = std::sin(1.7 * k + 0.3);
    xs.push_back(static_cast<float>(a));
    xs.push_back(static_cast<float>(b));
    ys.push_back(static_cast<float>(0.8 * a * b + 0.4 * std::sin(3 * a) - 0.2 * b));
  }
  return {f32(xs, {8, 2}), f32(ys, {8, 1})};
}

double loss_value(TinyMlp& model, const Dataset& data) {
  NoGradGuard no_grad;
  return mean(square(model(data.x) - data.y)).item();
}

// `steps` updates of the MSE loss; the learning rate comes from `schedule` when given, and the
// gradients are clipped to norm 1 when `clip` is set.
void train(TinyMlp& model, Optimizer& opt, const Dataset& data, int steps,
           const LrSchedule* schedule = nullptr, bool clip = false) {
  for (int i = 0; i < steps; ++i) {
    opt.zero_grad();
    backward(mean(square(model(data.x) - data.y)));
    if (clip) clip_grad_norm_(model.named_parameters(), 1.0);
    if (schedule != nullptr) apply_schedule(*schedule, opt);
    opt.step();
  }
}

using OptimizerFactory = std::function<std::unique_ptr<Optimizer>(TinyMlp&)>;

struct NamedFactory {
  std::string name;
  OptimizerFactory make;
  std::shared_ptr<LrSchedule> schedule;  // for overfitting; null: the constructor's lr
};

std::vector<NamedFactory> optimizer_factories() {
  return {
      {"SGD nesterov",
       [](TinyMlp& m) {
         return std::make_unique<SGD>(
             m.named_parameters(),
             SGDOptions{.lr = 0.1, .momentum = 0.9, .weight_decay = 1e-5, .nesterov = true});
       },
       nullptr},
      {"Adam amsgrad",
       [](TinyMlp& m) {
         return std::make_unique<Adam>(
             m.named_parameters(), AdamOptions{.lr = 0.02, .weight_decay = 1e-5, .amsgrad = true});
       },
       nullptr},
      {"AdamW",
       [](TinyMlp& m) {
         return std::make_unique<AdamW>(m.named_parameters(), AdamWOptions{.lr = 0.02});
       },
       nullptr},
      {"Adafactor (relative step capped at 0.1, first moment)",
       [](TinyMlp& m) {
         return std::make_unique<Adafactor>(m.named_parameters(),
                                            AdafactorOptions{.lr = 0.1, .beta1 = 0.9});
       },
       nullptr},
      {"Adafactor (trax flags)",
       [](TinyMlp& m) {
         return std::make_unique<Adafactor>(
             m.named_parameters(),
             AdafactorOptions{.lr = 0.03, .relative_step = false, .weight_decay_rate = 1e-5});
       },
       // trax's Adafactor runs under a schedule (it has no step size of its own).
       std::make_shared<LinearWarmupRsqrtDecay>(0.03, 10)},
  };
}

// --- hand-written reference updates on doubles --------------------------------------------------

double rms_of(const Vec& v) {
  double s = 0;
  for (double x : v) s += x * x;
  return std::sqrt(s / static_cast<double>(v.size()));
}

}  // namespace

// --- SGD
// -------------------------------------------------------------------------------------------

TEST_CASE(
    "SGD matches torch.optim.SGD's update on doubles: plain, weight decay, momentum, "
    "dampening, nesterov") {
  const Vec p0 = {1.0, -2.0, 0.5};
  const std::vector<Vec> grads = {{0.1, -0.2, 0.3}, {-0.4, 0.5, 0.05}, {0.2, 0.2, -0.1}};
  struct Case {
    const char* name;
    SGDOptions options;
  };
  const std::vector<Case> cases = {
      {"plain", {.lr = 0.1}},
      {"weight decay", {.lr = 0.1, .weight_decay = 0.05}},
      {"momentum with dampening", {.lr = 0.1, .momentum = 0.9, .dampening = 0.3}},
      {"nesterov with weight decay",
       {.lr = 0.05, .momentum = 0.8, .weight_decay = 0.01, .nesterov = true}},
  };
  for (const auto& c : cases) {
    CAPTURE(c.name);
    Tensor p = param64(p0, {3});
    SGD opt({{"p", p}}, c.options);
    const auto& o = c.options;
    Vec ref = p0, buf(3, 0.0);
    for (std::size_t s = 0; s < grads.size(); ++s) {
      give_grad(p, grads[s]);
      opt.step();
      for (int i = 0; i < 3; ++i) {
        double g = grads[s][i] + o.weight_decay * ref[i];
        if (o.momentum != 0) {
          buf[i] = s == 0 ? g : o.momentum * buf[i] + (1 - o.dampening) * g;
          g = o.nesterov ? g + o.momentum * buf[i] : buf[i];
        }
        ref[i] -= o.lr * g;
      }
      check_close(p, ref, 1e-14);
    }
    CHECK(opt.step_count() == 3);
    StateDict state = opt.state_dict();
    if (o.momentum != 0) {
      check_close(state.at("p.momentum_buffer"), buf, 1e-14);
    } else {
      CHECK(!state.contains("p.momentum_buffer"));
    }
    CHECK(state.at("p.step").item<int64_t>() == 3);
  }
}

// --- Adam / AdamW
// ----------------------------------------------------------------------------------

namespace {

// torch.optim.Adam / AdamW's single-tensor update, on doubles.
struct AdamRef {
  double lr, beta1, beta2, eps, wd;
  bool decoupled, amsgrad;
  Vec p, m, v, vmax;
  int t = 0;
  void step(const Vec& grad) {
    ++t;
    const double bc1 = 1 - std::pow(beta1, t), bc2 = 1 - std::pow(beta2, t);
    for (std::size_t i = 0; i < p.size(); ++i) {
      double g = grad[i];
      if (decoupled) {
        p[i] *= 1 - lr * wd;
      } else {
        g += wd * p[i];
      }
      m[i] = beta1 * m[i] + (1 - beta1) * g;
      v[i] = beta2 * v[i] + (1 - beta2) * g * g;
      vmax[i] = std::max(vmax[i], v[i]);
      const double second = amsgrad ? vmax[i] : v[i];
      p[i] -= lr / bc1 * m[i] / (std::sqrt(second) / std::sqrt(bc2) + eps);
    }
  }
};

}  // namespace

TEST_CASE("Adam and AdamW match torch's bias-corrected updates on doubles") {
  const Vec p0 = {0.5, -1.5, 2.0, 0.1};
  // The second moment of element 0 falls after its large first gradient: amsgrad keeps the max.
  const std::vector<Vec> grads = {{3.0, -0.2, 0.3, 0.0},
                                  {0.1, 0.5, -0.05, 0.2},
                                  {-0.2, 0.4, 0.1, -0.3},
                                  {0.05, -0.1, 0.2, 0.1}};
  struct Case {
    const char* name;
    bool decoupled, amsgrad;
    double wd;
  };
  const std::vector<Case> cases = {{"Adam", false, false, 0.0},
                                   {"Adam with L2 weight decay", false, false, 0.1},
                                   {"Adam amsgrad", false, true, 0.1},
                                   {"AdamW", true, false, 0.1},
                                   {"AdamW amsgrad", true, true, 0.1}};
  for (const auto& c : cases) {
    CAPTURE(c.name);
    Tensor p = param64(p0, {2, 2});
    const double lr = 0.01, b1 = 0.8, b2 = 0.95, eps = 1e-6;
    std::unique_ptr<Optimizer> opt;
    if (c.decoupled) {
      opt = std::make_unique<AdamW>(
          ParameterList{{"w", p}},
          AdamWOptions{
              .lr = lr, .betas = {b1, b2}, .eps = eps, .weight_decay = c.wd, .amsgrad = c.amsgrad});
    } else {
      opt = std::make_unique<Adam>(
          ParameterList{{"w", p}},
          AdamOptions{
              .lr = lr, .betas = {b1, b2}, .eps = eps, .weight_decay = c.wd, .amsgrad = c.amsgrad});
    }
    AdamRef ref{lr, b1, b2, eps, c.wd, c.decoupled, c.amsgrad, p0, Vec(4), Vec(4), Vec(4)};
    for (const Vec& g : grads) {
      give_grad(p, g);
      opt->step();
      ref.step(g);
      check_close(p, ref.p, 1e-13);
    }
    StateDict state = opt->state_dict();
    check_close(state.at("w.exp_avg"), ref.m, 1e-13);
    check_close(state.at("w.exp_avg_sq"), ref.v, 1e-13);
    CHECK(state.contains("w.max_exp_avg_sq") == c.amsgrad);
    if (c.amsgrad) {
      check_close(state.at("w.max_exp_avg_sq"), ref.vmax, 1e-13);
      CHECK(ref.vmax[0] > ref.v[0]);  // the maximum mattered
    }
  }
}

TEST_CASE("AdamW decays weights apart from the gradient, Adam folds the decay into it") {
  // With a zero gradient Adam's L2 term still flows through the normalised moments, while
  // AdamW shrinks the weight by exactly 1 - lr * wd and leaves the moments at zero.
  Tensor pa = param64({2.0, -4.0}, {2});
  Tensor pw = param64({2.0, -4.0}, {2});
  Adam adam({{"w", pa}}, {.lr = 0.1, .weight_decay = 0.5});
  AdamW adamw({{"w", pw}}, {.lr = 0.1, .weight_decay = 0.5});
  give_grad(pa, {0.0, 0.0});
  give_grad(pw, {0.0, 0.0});
  adam.step();
  adamw.step();
  check_close(pw, {2.0 * (1 - 0.05), -4.0 * (1 - 0.05)}, 1e-15);
  // Adam's first step is lr * sign(g') with g' = wd * p (up to eps).
  check_close(pa, {2.0 - 0.1, -4.0 + 0.1}, 1e-7);
  check_close(adamw.state_dict().at("w.exp_avg"), {0.0, 0.0}, 0);
  CHECK(AdamW({{"w", pw}}).options().weight_decay == 1e-2);  // torch's AdamW default
  CHECK(Adam({{"w", pa}}).options().weight_decay == 0);
}

// --- Adafactor
// -------------------------------------------------------------------------------------

namespace {

// Shazeer & Stern's update for a [batch..., n, m] parameter (batch = product of leading dims),
// written out on doubles. factored = false keeps the full second moment.
struct AdafactorRef {
  AdafactorOptions o;
  int64_t batch, n, m;
  bool factored;
  Vec x, row, col, v, mom;
  int t = 0;
  int clipped_steps = 0;
  int capped_steps = 0;  // steps where relative step took 1/sqrt(t) instead of lr

  AdafactorRef(AdafactorOptions options, Vec x0, int64_t batch_, int64_t n_, int64_t m_,
               bool factored_)
      : o(options), batch(batch_), n(n_), m(m_), factored(factored_), x(std::move(x0)) {
    row.assign(batch * n, 0);
    col.assign(batch * m, 0);
    v.assign(x.size(), 0);
    mom.assign(x.size(), 0);
  }

  void step(const Vec& g) {
    ++t;
    const double beta2 = 1 - std::pow(t, -o.decay_exponent);
    double rho = o.lr;
    if (o.relative_step && 1 / std::sqrt(t) < o.lr) {
      rho = 1 / std::sqrt(t);
      ++capped_steps;
    }
    const double alpha = o.scale_parameter ? rho * std::max(o.eps2, rms_of(x)) : rho;
    Vec u(x.size());
    for (int64_t b = 0; b < batch; ++b) {
      auto at = [&](int64_t i, int64_t j) { return (b * n + i) * m + j; };
      if (factored) {
        for (int64_t i = 0; i < n; ++i) {
          double s = 0;
          for (int64_t j = 0; j < m; ++j) s += g[at(i, j)] * g[at(i, j)] + o.eps1;
          row[b * n + i] = beta2 * row[b * n + i] + (1 - beta2) * s / static_cast<double>(m);
        }
        for (int64_t j = 0; j < m; ++j) {
          double s = 0;
          for (int64_t i = 0; i < n; ++i) s += g[at(i, j)] * g[at(i, j)] + o.eps1;
          col[b * m + j] = beta2 * col[b * m + j] + (1 - beta2) * s / static_cast<double>(n);
        }
        double row_mean = 0;
        for (int64_t i = 0; i < n; ++i) row_mean += row[b * n + i] / static_cast<double>(n);
        for (int64_t i = 0; i < n; ++i) {
          for (int64_t j = 0; j < m; ++j) {
            const double vhat = row[b * n + i] * col[b * m + j] / row_mean;
            u[at(i, j)] = g[at(i, j)] / std::sqrt(vhat);
          }
        }
      } else {
        for (int64_t i = 0; i < n; ++i) {
          for (int64_t j = 0; j < m; ++j) {
            const int64_t k = at(i, j);
            v[k] = beta2 * v[k] + (1 - beta2) * (g[k] * g[k] + o.eps1);
            u[k] = g[k] / std::sqrt(v[k]);
          }
        }
      }
    }
    if (o.clip_threshold) {
      const double denom = std::max(1.0, rms_of(u) / *o.clip_threshold);
      if (denom > 1) ++clipped_steps;
      for (double& e : u) e /= denom;
    }
    for (std::size_t k = 0; k < x.size(); ++k) {
      double upd = alpha * u[k];
      if (o.beta1 > 0) {
        mom[k] = o.beta1 * mom[k] + (1 - o.beta1) * upd;
        upd = mom[k];
      }
      x[k] = (1 - o.weight_decay_rate) * x[k] - upd;
    }
  }
};

// Gradients that grow over the steps, so the second moment lags and update clipping engages.
std::vector<Vec> growing_grads(std::size_t size, int steps) {
  std::vector<Vec> out;
  for (int s = 0; s < steps; ++s) {
    Vec g(size);
    for (std::size_t k = 0; k < size; ++k) {
      g[k] = std::pow(3.0, s) * std::sin(1.3 * static_cast<double>(k) + 0.7 * s + 0.2);
    }
    out.push_back(g);
  }
  return out;
}

}  // namespace

TEST_CASE(
    "Adafactor factored second moments match the paper's update (relative step, parameter "
    "scale, update clipping)") {
  const Vec x0 = {0.3, -0.8, 1.1, 0.5, -0.2, 0.9};
  // lr = 0.6 caps rho_t for t = 1, 2 and 1/sqrt(t) takes over from t = 3.
  const AdafactorOptions options{.lr = 0.6};
  Tensor w = param64(x0, {2, 3});
  Adafactor opt({{"w", w}}, options);
  AdafactorRef ref(options, x0, 1, 2, 3, true);
  for (const Vec& g : growing_grads(6, 5)) {
    give_grad(w, g);
    opt.step();
    ref.step(g);
    check_close(w, ref.x, 1e-12);
  }
  CHECK(ref.clipped_steps > 0);
  CHECK(ref.clipped_steps < 5);
  CHECK(ref.capped_steps == 3);
  StateDict state = opt.state_dict();
  CHECK(state.at("w.exp_avg_sq_row").shape() == Shape{2});
  CHECK(state.at("w.exp_avg_sq_col").shape() == Shape{3});
  check_close(state.at("w.exp_avg_sq_row"), ref.row, 1e-12);
  check_close(state.at("w.exp_avg_sq_col"), ref.col, 1e-12);
  CHECK(!state.contains("w.exp_avg_sq"));
  CHECK(!state.contains("w.exp_avg"));  // no first moment by default
}

TEST_CASE("Adafactor keeps full second moments for vectors and with factored = false") {
  // A tiny vector: its RMS is below eps2, so the parameter scale is eps2.
  const Vec b0 = {1e-4, -2e-4, 5e-5, 3e-4};
  const Vec w0 = {0.7, -0.4, 0.2, 1.5};
  const AdafactorOptions vector_options{};
  const AdafactorOptions matrix_options{.lr = 0.3, .factored = false};
  Tensor b = param64(b0, {4});
  Tensor w = param64(w0, {2, 2});
  Adafactor opt_b({{"b", b}}, vector_options);
  Adafactor opt_w({{"w", w}}, matrix_options);
  AdafactorRef ref_b(vector_options, b0, 1, 1, 4, false);
  AdafactorRef ref_w(matrix_options, w0, 1, 2, 2, false);
  const auto grads = growing_grads(4, 4);
  for (const Vec& g : grads) {
    give_grad(b, g);
    give_grad(w, g);
    opt_b.step();
    opt_w.step();
    ref_b.step(g);
    ref_w.step(g);
    check_close(b, ref_b.x, 1e-12);
    check_close(w, ref_w.x, 1e-12);
  }
  CHECK(rms_of(b0) < 1e-3);
  CHECK(opt_b.state_dict().at("b.exp_avg_sq").shape() == Shape{4});
  check_close(opt_w.state_dict().at("w.exp_avg_sq"), ref_w.v, 1e-12);
  CHECK(!opt_w.state_dict().contains("w.exp_avg_sq_row"));

  // The factored estimate differs from the full one on the same matrix (a rank-1 estimate of a
  // gradient pattern that is not rank 1).
  Tensor wf = param64(w0, {2, 2});
  Adafactor opt_f({{"w", wf}}, {.lr = 0.3});
  for (const Vec& g : grads) {
    give_grad(wf, g);
    opt_f.step();
  }
  const Vec full = w.to_vector<double>(), fact = wf.to_vector<double>();
  double diff = 0;
  for (std::size_t k = 0; k < full.size(); ++k) diff = std::max(diff, std::abs(full[k] - fact[k]));
  CHECK(diff > 1e-3);
}

TEST_CASE(
    "Adafactor with trax's flags: fixed lr, first moment, weight decay, no clipping, a "
    "rank-3 parameter factored over its last two dims") {
  const AdafactorOptions options{.lr = 0.05,
                                 .relative_step = false,
                                 .beta1 = 0.9,
                                 .clip_threshold = std::nullopt,
                                 .weight_decay_rate = 0.01};
  Vec x0(12);
  for (std::size_t k = 0; k < x0.size(); ++k) x0[k] = std::cos(0.9 * static_cast<double>(k));
  Tensor w = param64(x0, {2, 2, 3});
  Adafactor opt({{"w", w}}, options);
  AdafactorRef ref(options, x0, 2, 2, 3, true);
  for (const Vec& g : growing_grads(12, 4)) {
    give_grad(w, g);
    opt.step();
    ref.step(g);
    check_close(w, ref.x, 1e-12);
  }
  StateDict state = opt.state_dict();
  CHECK(state.at("w.exp_avg_sq_row").shape() == Shape{2, 2});
  CHECK(state.at("w.exp_avg_sq_col").shape() == Shape{2, 3});
  check_close(state.at("w.exp_avg_sq_row"), ref.row, 1e-12);
  check_close(state.at("w.exp_avg_sq_col"), ref.col, 1e-12);
  check_close(state.at("w.exp_avg"), ref.mom, 1e-12);

  // Without scale_parameter the step is lr itself.
  const AdafactorOptions plain{.lr = 0.05, .relative_step = false, .scale_parameter = false};
  Tensor v = param64({0.2, -0.1, 0.4}, {3});
  Adafactor opt_v({{"v", v}}, plain);
  AdafactorRef ref_v(plain, {0.2, -0.1, 0.4}, 1, 1, 3, false);
  for (const Vec& g : growing_grads(3, 3)) {
    give_grad(v, g);
    opt_v.step();
    ref_v.step(g);
    check_close(v, ref_v.x, 1e-12);
  }
}

// --- common optimizer behaviour
// --------------------------------------------------------------------

TEST_CASE(
    "Optimizers update parameters in place, skip those without a gradient and count steps "
    "per parameter") {
  auto model = std::make_shared<TinyMlp>(3);
  Adam opt(model->named_parameters(), {.lr = 0.1});
  const Tensor& w = model->hidden->weight;
  void* data_before = w.data_ptr();
  const std::vector<float> out_bias_before = vals(model->out->bias);
  const std::vector<float> w_before = vals(w);

  // Only the hidden weight has a gradient.
  w.set_grad(full({16, 2}, 0.5));
  opt.step();
  CHECK(w.data_ptr() == data_before);
  CHECK(model->named_parameters()[0].second.is_same(opt.named_parameters()[0].second));
  CHECK(w.is_leaf());
  CHECK(w.requires_grad());
  // Adam's first step moves every element by lr (up to eps): g / sqrt(g^2) = 1.
  std::vector<float> w_after = vals(w);
  for (std::size_t k = 0; k < w_after.size(); ++k)
    CHECK(w_after[k] == doctest::Approx(w_before[k] - 0.1));
  CHECK(vals(model->out->bias) == out_bias_before);
  StateDict state = opt.state_dict();
  CHECK(state.contains("hidden.weight.exp_avg"));
  CHECK(!state.contains("out.bias.exp_avg"));
  CHECK(!state.contains("out.bias.step"));

  // The out bias joins at the second step: its bias correction starts at its own t = 1.
  model->out->bias.set_grad(full({1}, -2.0));
  const float b_before = vals(model->out->bias)[0];
  opt.step();
  CHECK(vals(model->out->bias)[0] == doctest::Approx(b_before + 0.1));
  state = opt.state_dict();
  CHECK(state.at("step").item<int64_t>() == 2);
  CHECK(state.at("step").dtype() == DType::i64);
  CHECK(state.at("hidden.weight.step").item<int64_t>() == 2);
  CHECK(state.at("out.bias.step").item<int64_t>() == 1);
  CHECK(opt.step_count() == 2);

  opt.zero_grad();
  for (const auto& [_, p] : model->named_parameters()) CHECK(!p.grad().defined());
  opt.step();  // no gradients: nothing changes but the count
  CHECK(opt.step_count() == 3);
  CHECK(opt.state_dict().at("hidden.weight.step").item<int64_t>() == 2);
}

TEST_CASE("Optimizer state lives in the parameter's dtype and device") {
  Tensor p32 = f32({1, 2, 3, 4}, {2, 2}).requires_grad_();
  Tensor p64 = param64({1, 2}, {2});
  Adafactor opt({{"a", p32}, {"b", p64}}, {.beta1 = 0.5});
  p32.set_grad(f32({1, 1, 1, 1}, {2, 2}));
  p64.set_grad(f64({1, 1}, {2}));
  opt.step();
  StateDict state = opt.state_dict();
  CHECK(state.at("a.exp_avg_sq_row").dtype() == DType::f32);
  CHECK(state.at("a.exp_avg").dtype() == DType::f32);
  CHECK(state.at("b.exp_avg_sq").dtype() == DType::f64);
  for (const auto& [key, t] : state) CHECK(t.device() == Device::cpu());

  // Loading converts to the parameter's dtype.
  StateDict as_f64;
  for (const auto& [key, t] : state)
    as_f64.emplace(key, is_floating(t.dtype()) ? t.to(DType::f64) : t);
  opt.load_state_dict(as_f64);
  CHECK(opt.state_dict().at("a.exp_avg").dtype() == DType::f32);
}

TEST_CASE("Each optimizer overfits a tiny MLP to near-zero loss") {
  const Dataset data = tiny_dataset();
  for (const auto& [name, make, schedule] : optimizer_factories()) {
    CAPTURE(name);
    auto model = std::make_shared<TinyMlp>(7);
    auto opt = make(*model);
    const double initial = loss_value(*model, data);
    train(*model, *opt, data, 400, schedule.get());
    const double final_loss = loss_value(*model, data);
    INFO(name, ": loss ", initial, " -> ", final_loss);
    CHECK(initial > 0.05);
    CHECK(final_loss < 1e-3);
  }
}

TEST_CASE(
    "state_dict round trip: N steps, save, load into fresh objects, M steps == N + M steps "
    "bit for bit") {
  const Dataset data = tiny_dataset();
  const LinearWarmupRsqrtDecay schedule(0.05, 4);
  const int n = 6, m = 5;
  for (const auto& [name, make, _] : optimizer_factories()) {
    CAPTURE(name);
    // Uninterrupted.
    auto model_a = std::make_shared<TinyMlp>(11);
    auto opt_a = make(*model_a);
    train(*model_a, *opt_a, data, n + m, &schedule, true);

    // Interrupted: snapshot after n steps, and keep training (the snapshot must not follow).
    auto model_b = std::make_shared<TinyMlp>(11);
    auto opt_b = make(*model_b);
    train(*model_b, *opt_b, data, n, &schedule, true);
    StateDict model_state;
    for (const auto& [key, t] : model_b->state_dict()) model_state.emplace(key, t.clone());
    const StateDict opt_state = opt_b->state_dict();
    train(*model_b, *opt_b, data, m, &schedule, true);

    // Fresh objects (another init), loaded from the snapshot; twice, so a load that kept the
    // snapshot's tensors would have the first resumed run change the second's start.
    auto model_c = std::make_shared<TinyMlp>(99);
    auto opt_c = make(*model_c);
    model_c->load_state_dict(model_state);
    opt_c->load_state_dict(opt_state);
    CHECK(opt_c->step_count() == n);
    train(*model_c, *opt_c, data, m, &schedule, true);
    auto model_d = std::make_shared<TinyMlp>(98);
    auto opt_d = make(*model_d);
    model_d->load_state_dict(model_state);
    opt_d->load_state_dict(opt_state);
    train(*model_d, *opt_d, data, m, &schedule, true);

    CHECK(opt_c->step_count() == n + m);
    const auto params_a = model_a->named_parameters();
    const auto params_b = model_b->named_parameters();
    const auto params_c = model_c->named_parameters();
    const auto params_d = model_d->named_parameters();
    for (std::size_t i = 0; i < params_a.size(); ++i) {
      CAPTURE(params_a[i].first);
      CHECK(vals(params_c[i].second) == vals(params_a[i].second));
      CHECK(vals(params_b[i].second) == vals(params_a[i].second));
      CHECK(vals(params_d[i].second) == vals(params_a[i].second));
    }
    const StateDict final_a = opt_a->state_dict();
    const StateDict final_c = opt_c->state_dict();
    REQUIRE(final_a.size() == final_c.size());
    for (const auto& [key, t] : final_a) {
      CAPTURE(key);
      REQUIRE(final_c.contains(key));
      CHECK(final_c.at(key).to_vector<double>() == t.to_vector<double>());
    }
  }
}

TEST_CASE("load_state_dict names offending keys and changes nothing when it fails") {
  auto model = std::make_shared<TinyMlp>(5);
  Adam opt(model->named_parameters(), {.lr = 0.01, .amsgrad = true});
  train(*model, opt, tiny_dataset(), 2);
  const StateDict good = opt.state_dict();
  CHECK(good.size() == 1 + 4 * 4);  // step + 4 parameters x (step, exp_avg, exp_avg_sq, max)

  auto fails_with = [&](StateDict bad, const std::vector<std::string>& fragments) {
    const std::string msg = error_message([&] { opt.load_state_dict(bad); });
    CHECK(contains(msg, "Adam.load_state_dict"));
    for (const auto& f : fragments) {
      INFO(msg);
      CHECK(contains(msg, f));
    }
  };
  {
    StateDict bad = good;
    bad.emplace("hidden.weight.momentum_buffer", zeros({16, 2}));
    bad.emplace("decoder.weight.exp_avg", zeros({2}));
    fails_with(bad, {"unexpected keys [decoder.weight.exp_avg, hidden.weight.momentum_buffer]"});
  }
  {
    StateDict bad = good;
    bad.erase("out.bias.exp_avg_sq");
    bad.erase("step");
    fails_with(bad, {"missing keys [step, out.bias.exp_avg_sq]"});
  }
  {
    StateDict bad = good;
    bad["hidden.bias.exp_avg"] = zeros({3});
    fails_with(bad, {"hidden.bias.exp_avg: checkpoint shape [3] vs expected shape [16]"});
  }
  {
    StateDict bad = good;
    bad["step"] = from_vector<int64_t>({-1}, Shape{});
    bad["out.weight.step"] = full({}, 1.5);
    bad["out.weight.exp_avg"] = zeros({1, 16}, {.dtype = DType::i64});
    fails_with(bad, {"step: a step counter must be an integer >= 0, got -1",
                     "out.weight.step: a step counter must be an integer >= 1, got 1.5",
                     "out.weight.exp_avg: dtype i64 is not floating"});
  }
  {
    // Another optimizer's state: Adafactor reads none of Adam's slots.
    auto other = std::make_shared<TinyMlp>(5);
    Adafactor adafactor(other->named_parameters());
    const std::string msg = error_message([&] { adafactor.load_state_dict(good); });
    // A vector's "exp_avg_sq" is a slot of both, so only the matrices miss theirs.
    CHECK(contains(msg,
                   "Adafactor.load_state_dict: missing keys [hidden.weight.exp_avg_sq_row, "
                   "hidden.weight.exp_avg_sq_col, out.weight.exp_avg_sq_row, "
                   "out.weight.exp_avg_sq_col]"));
    CHECK(contains(msg,
                   "unexpected keys [hidden.bias.exp_avg, hidden.bias.max_exp_avg_sq, "
                   "hidden.weight.exp_avg,"));
  }
  // Nothing changed: the state is still `good`.
  const StateDict after = opt.state_dict();
  REQUIRE(after.size() == good.size());
  for (const auto& [key, t] : good)
    CHECK(after.at(key).to_vector<double>() == t.to_vector<double>());

  // A dict with only "step" leaves every parameter without state.
  opt.load_state_dict({{"step", from_vector<int64_t>({7}, Shape{})}});
  CHECK(opt.step_count() == 7);
  CHECK(opt.state_dict().size() == 1);
}

TEST_CASE("Optimizers validate their parameters and hyperparameters") {
  Tensor p = param64({1, 2}, {2});
  Tensor q = param64({3}, {1});
  CHECK(
      contains(error_message([&] { SGD(NamedParameters{}); }), "SGD: got an empty parameter list"));
  CHECK(contains(error_message([&] {
                   SGD({{"a", p}, {"a", q}});
                 }),
                 "SGD: the parameter name 'a' appears twice"));
  CHECK(contains(error_message([&] {
                   SGD({{"a", p}, {"b", p}});
                 }),
                 "SGD: parameters 'a' and 'b' are the same tensor"));
  Tensor non_leaf = p * 2.0;
  CHECK(contains(error_message([&] {
                   Adam({{"x", non_leaf}});
                 }),
                 "Adam: parameter 'x' is not a leaf tensor"));
  CHECK(contains(error_message([&] {
                   Adam({{"x", i64({1, 2})}});
                 }),
                 "Adam: parameter 'x' must be floating, got i64"));
  CHECK(contains(error_message([&] { SGD({p}, {.lr = -1}); }), "SGD: invalid learning rate: -1"));
  CHECK(contains(error_message([&] { SGD({p}, {.momentum = 0, .nesterov = true}); }),
                 "SGD: nesterov momentum requires momentum > 0 and dampening == 0"));
  CHECK(contains(error_message([&] {
                   Adam({p}, {.betas = {0.9, 1.0}});
                 }),
                 "Adam: invalid beta2 (want 0 <= beta2 < 1): 1"));
  CHECK(contains(error_message([&] { AdamW({p}, {.eps = -1e-8}); }), "AdamW: invalid eps: -1e-08"));
  CHECK(contains(error_message([&] { Adafactor({p}, {.decay_exponent = 1.5}); }),
                 "Adafactor: invalid decay_exponent (want 0 < c <= 1): 1.5"));
  CHECK(contains(error_message([&] { Adafactor({p}, {.clip_threshold = 0.0}); }),
                 "Adafactor: invalid clip_threshold (want > 0): 0"));
  SGD sgd({p, q});  // unnamed parameters are named by position
  CHECK(sgd.named_parameters()[1].first == "1");
  CHECK(contains(error_message([&] { sgd.set_lr(std::nan("")); }), "SGD: invalid learning rate"));
  sgd.set_lr(0.25);
  CHECK(sgd.lr() == 0.25);
  p.set_grad(f32({1, 1}, {2}));
  CHECK(contains(error_message([&] { sgd.step(); }),
                 "SGD.step: the gradient of '0' is f32 on cpu, but the parameter is f64 on cpu"));
}

// --- gradient clipping
// -----------------------------------------------------------------------------

TEST_CASE("clip_grad_norm_ computes the global norm and scales only above max_norm") {
  Tensor a = param64({0, 0, 0}, {3});
  Tensor b = param64({0}, {1});
  Tensor c = param64({0, 0}, {2});  // no gradient: skipped
  const Vec ga = {3, 0, -4}, gb = {12};
  auto reset = [&] {
    give_grad(a, ga);
    give_grad(b, gb);
  };
  const NamedParameters params = {{"a", a}, {"b", b}, {"c", c}};

  reset();
  ClipGradResult r = clip_grad_norm_(params, 6.5);
  CHECK(r.total_norm == doctest::Approx(13.0).epsilon(1e-15));
  CHECK(r.finite);
  CHECK(r.clipped);
  const double coef = 6.5 / (13.0 + 1e-6);
  check_close(a.grad(), {3 * coef, 0, -4 * coef}, 1e-15);
  check_close(b.grad(), {12 * coef}, 1e-15);
  CHECK(!c.grad().defined());

  reset();
  r = clip_grad_norm_(params, 20);
  CHECK(!r.clipped);
  CHECK(a.grad().to_vector<double>() == ga);
  CHECK(b.grad().to_vector<double>() == gb);

  reset();
  CHECK(clip_grad_norm_(params, 100, {.norm_type = 1}).total_norm == doctest::Approx(19.0));
  reset();
  CHECK(clip_grad_norm_(params, 100, {.norm_type = INFINITY}).total_norm == 12.0);
  reset();
  CHECK(clip_grad_norm_(params, 100, {.norm_type = 3}).total_norm ==
        doctest::Approx(std::cbrt(27.0 + 64.0 + 1728.0)));
  // Unnamed parameters work too; none with a gradient gives a zero norm.
  CHECK(clip_grad_norm_({c}, 1.0).total_norm == 0);

  CHECK(contains(error_message([&] { clip_grad_norm_(params, 0); }),
                 "clip_grad_norm_: max_norm must be finite and > 0, got 0"));
  CHECK(contains(error_message([&] { clip_grad_norm_(params, 1, {.norm_type = -2}); }),
                 "clip_grad_norm_: norm_type must be > 0 (or infinity), got -2"));
}

TEST_CASE("clip_grad_norm_ accumulates float32 gradients in float64") {
  // 1e20^2 overflows float32; the float64 accumulation gets sqrt(4) * 1e20.
  Tensor w = f32({0, 0, 0, 0}, {4}).requires_grad_();
  w.set_grad(full({4}, 1e20));
  ClipGradResult r = clip_grad_norm_({w}, 1e30);
  CHECK(r.finite);
  CHECK(r.total_norm == doctest::Approx(2e20).epsilon(1e-6));
  CHECK(!r.clipped);
}

TEST_CASE("clip_grad_norm_ reports non-finite gradients without scaling them") {
  Tensor a = param64({0, 0}, {2});
  Tensor b = param64({0, 0}, {2});
  const NamedParameters params = {{"a", a}, {"b", b}};
  give_grad(a, {100, 0});
  give_grad(b, {std::nan(""), 1});
  ClipGradResult r = clip_grad_norm_(params, 1.0);
  CHECK(std::isnan(r.total_norm));
  CHECK(!r.finite);
  CHECK(!r.clipped);
  CHECK(a.grad().to_vector<double>() == Vec{100, 0});  // not scaled by a NaN coefficient

  give_grad(b, {INFINITY, 1});
  r = clip_grad_norm_(params, 1.0, {.norm_type = INFINITY});
  CHECK(r.total_norm == INFINITY);
  CHECK(!r.finite);

  const std::string msg =
      error_message([&] { clip_grad_norm_(params, 1.0, {.error_if_nonfinite = true}); });
  CHECK(contains(msg,
                 "clip_grad_norm_: the total norm of order 2 of the gradients is inf: the "
                 "gradient of 'b' is not finite"));
  // Finite gradients whose norm overflows float64.
  give_grad(b, {1e300, 1e300});
  CHECK(contains(error_message([&] { clip_grad_norm_(params, 1.0, {.error_if_nonfinite = true}); }),
                 "every gradient is finite, but the norm overflowed"));
}

}  // namespace rw::nn
