#pragma once
// Dynamic loss scaling for f16 mixed precision, as torch.amp.GradScaler. f16's smallest normal
// value is 6e-5, so small gradients flowing through f16 activations underflow to zero; scaling the
// loss by S (2^16 at first) scales every gradient by S on the way back, and the optimizer sees the
// gradients divided by S again, in f32 (the master weights' gradients are f32). When a gradient
// overflowed (inf or NaN) the step is skipped and S shrinks; after `growth_interval` good steps in
// a row S grows again.
//
//   rw::nn::GradScaler scaler;                         // bf16 needs none: f32's exponent range
//   {
//     rw::AutocastScope autocast(rw::DType::f16);
//     rw::backward(scaler.scale(model.loss(x, y)));
//   }
//   scaler.unscale_(opt);                              // optional: before clipping
//   rw::nn::clip_grad_norm_(model.named_parameters(), 1.0);
//   scaler.step(opt);                                  // skipped when a gradient is inf/NaN
//   scaler.update();                                   // back off or grow the scale
//   opt.zero_grad();
#include <cstdint>

#include "core/tensor.h"
#include "nn/module.h"
#include "nn/optimizer.h"

namespace rw::nn {

struct GradScalerOptions {
  double init_scale = 65536.0;     // 2^16, as torch; > 0 and finite
  double growth_factor = 2.0;      // > 1
  double backoff_factor = 0.5;     // in (0, 1)
  int64_t growth_interval = 2000;  // good steps in a row before the scale grows; > 0
  // Disabled, the scaler is a no-op (scale() returns the loss, step() just steps), so one
  // training loop serves every precision.
  bool enabled = true;
};

class GradScaler {
 public:
  explicit GradScaler(GradScalerOptions options = {});

  bool enabled() const { return options_.enabled; }
  // The current scale (1 when disabled).
  double get_scale() const { return options_.enabled ? scale_ : 1.0; }
  // Good steps in a row since the scale last changed.
  int64_t growth_tracker() const { return growth_tracker_; }

  // loss * scale, in f32 (a bf16/f16 loss is upcast first, so the product cannot overflow the
  // loss's own dtype); the loss itself when disabled.
  Tensor scale(const Tensor& loss) const;

  // Divides every gradient of the optimizer's parameters by the scale, in place (exact for f32
  // gradients while the scale is a power of two, as with the default options), and notes whether
  // any is inf or NaN. At most once between update() calls (an rw::Error otherwise).
  void unscale_(Optimizer& optimizer);
  // unscale_ (unless done) and optimizer.step() when every gradient is finite. Returns whether
  // the optimizer stepped. When disabled: optimizer.step(), true.
  bool step(Optimizer& optimizer);
  // Ends the iteration: after an inf/NaN the scale is multiplied by backoff_factor and the
  // tracker reset; otherwise the tracker counts the good step, and at growth_interval the scale is
  // multiplied by growth_factor and the tracker reset.
  void update();
  // Whether this iteration's unscale_ found an inf or NaN gradient.
  bool found_inf() const { return found_inf_; }

  // "scale" (f64 scalar) and "growth_tracker" (i64 scalar): what a checkpoint needs to resume.
  // The factors and interval come from the constructor.
  StateDict state_dict() const;
  // Validates both entries (present, scalar, scale > 0 and finite, tracker >= 0; no other key)
  // before changing anything; rw::Error naming the key otherwise.
  void load_state_dict(const StateDict& state);

 private:
  GradScalerOptions options_;
  double scale_;
  int64_t growth_tracker_ = 0;
  bool unscaled_ = false;   // unscale_ ran in this iteration
  bool found_inf_ = false;  // and found an inf/NaN
};

}  // namespace rw::nn
