#include "nn/grad_scaler.h"

#include <cmath>

#include "autograd/tape.h"
#include "core/ops.h"

namespace rw::nn {
namespace {

constexpr const char* kName = "GradScaler";

}  // namespace

GradScaler::GradScaler(GradScalerOptions options) : options_(options), scale_(options.init_scale) {
  RW_CHECK(std::isfinite(options.init_scale) && options.init_scale > 0,
           "{}: init_scale must be positive and finite, got {}", kName, options.init_scale);
  RW_CHECK(std::isfinite(options.growth_factor) && options.growth_factor > 1,
           "{}: growth_factor must be > 1, got {}", kName, options.growth_factor);
  RW_CHECK(options.backoff_factor > 0 && options.backoff_factor < 1,
           "{}: backoff_factor must be in (0, 1), got {}", kName, options.backoff_factor);
  RW_CHECK(options.growth_interval > 0, "{}: growth_interval must be > 0, got {}", kName,
           options.growth_interval);
}

Tensor GradScaler::scale(const Tensor& loss) const {
  RW_CHECK(loss.defined() && is_floating(loss.dtype()),
           "{}: scale expects a floating loss tensor, got {}", kName,
           loss.defined() ? fmt::format("{}", loss.dtype()) : std::string("an undefined tensor"));
  if (!options_.enabled) return loss;
  const Tensor l = loss.dtype() == DType::f64 ? loss : loss.to(DType::f32);
  return mul(l, scale_);
}

void GradScaler::unscale_(Optimizer& optimizer) {
  if (!options_.enabled) return;
  RW_CHECK(!unscaled_,
           "{}: unscale_ was already called since the last update() (the gradients would be "
           "divided twice)",
           kName);
  NoGradGuard no_grad;
  const double inv = 1.0 / scale_;
  // The count of non-finite entries, kept as a tensor: one device sync at the end, not one per
  // parameter.
  Tensor non_finite;
  for (const auto& [name, p] : optimizer.named_parameters()) {
    const Tensor g = p.grad();
    if (!g.defined()) continue;
    // In the gradient's own dtype: f32 for f32 master weights, where dividing by a power of two
    // (the default scales) is exact.
    mul_(g, inv);
    Tensor bad = sum(logical_not(isfinite(g)));
    non_finite = non_finite.defined() ? add(non_finite, bad.to(non_finite.device())) : bad;
  }
  unscaled_ = true;
  found_inf_ = non_finite.defined() && non_finite.item<int64_t>() > 0;
}

bool GradScaler::step(Optimizer& optimizer) {
  if (!options_.enabled) {
    optimizer.step();
    return true;
  }
  if (!unscaled_) unscale_(optimizer);
  if (found_inf_) return false;
  optimizer.step();
  return true;
}

void GradScaler::update() {
  if (!options_.enabled) return;
  if (!unscaled_) {
    // Nothing was unscaled: no evidence either way, nothing changes (torch requires a step too).
    return;
  }
  if (found_inf_) {
    scale_ *= options_.backoff_factor;
    growth_tracker_ = 0;
  } else if (++growth_tracker_ >= options_.growth_interval) {
    scale_ *= options_.growth_factor;
    growth_tracker_ = 0;
  }
  unscaled_ = false;
  found_inf_ = false;
}

StateDict GradScaler::state_dict() const {
  return {
      {"scale", full({}, scale_, {.dtype = DType::f64})},
      {"growth_tracker", full({}, static_cast<double>(growth_tracker_), {.dtype = DType::i64})}};
}

void GradScaler::load_state_dict(const StateDict& state) {
  for (const auto& [key, value] : state) {
    RW_CHECK(key == "scale" || key == "growth_tracker",
             "{}: load_state_dict: unexpected key '{}' (expected 'scale' and 'growth_tracker')",
             kName, key);
  }
  auto scalar = [&](const char* key) {
    auto it = state.find(key);
    RW_CHECK(it != state.end(), "{}: load_state_dict: missing '{}'", kName, key);
    RW_CHECK(it->second.defined() && it->second.numel() == 1,
             "{}: load_state_dict: '{}' must be a scalar, got shape {}", kName, key,
             it->second.defined() ? it->second.shape() : Shape{});
    return it->second.to(Device::cpu()).to(DType::f64).item();
  };
  const double scale = scalar("scale");
  const double tracker = scalar("growth_tracker");
  RW_CHECK(std::isfinite(scale) && scale > 0,
           "{}: load_state_dict: 'scale' must be positive and finite, got {}", kName, scale);
  RW_CHECK(tracker >= 0 && tracker == std::floor(tracker),
           "{}: load_state_dict: 'growth_tracker' must be a non-negative integer, got {}", kName,
           tracker);
  scale_ = scale;
  growth_tracker_ = static_cast<int64_t>(tracker);
  unscaled_ = false;
  found_inf_ = false;
}

}  // namespace rw::nn
