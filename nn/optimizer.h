#pragma once
// Optimizer: the base of SGD, Adam/AdamW and Adafactor, shaped like torch.optim.Optimizer.
//
//   auto model = std::make_shared<MyModel>();
//   rw::nn::AdamW opt(model->named_parameters(), {.lr = 3e-4, .weight_decay = 0.01});
//   for (...) {
//     opt.zero_grad();
//     rw::backward(loss_of(*model, batch));
//     opt.set_lr(schedule.lr(opt.step_count() + 1));  // or rw::nn::apply_schedule(schedule, opt)
//     opt.step();
//   }
//
// Parameters are named (Module::named_parameters(), or a plain list named "0", "1", ... by
// position), so the optimizer's state_dict names each tensor after its parameter:
// "blocks.0.w_q.exp_avg", "blocks.0.w_q.step", plus the global "step". Per-parameter state is
// created at the first step in which the parameter has a gradient (as in torch, where a
// parameter's state is empty until then), on the parameter's device and in its dtype.
//
// step() updates the parameter tensors in place (under NoGradGuard), so the module and the
// optimizer keep sharing them; Module::to() replaces them, so build the optimizer after moving.
#include <cstdint>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"
#include "nn/module.h"

namespace rw::nn {

using NamedParameters = std::vector<std::pair<std::string, Tensor>>;

// The parameters an optimizer (or clip_grad_norm_) works on: named ones as they come from
// Module::named_parameters(), or plain tensors, which are named by their position ("0", "1", ...),
// as torch names the state of unnamed parameters. The constructors are implicit on purpose, so
// either kind is passed as it is.
struct ParameterList {
  ParameterList(NamedParameters named) : items(std::move(named)) {}
  ParameterList(std::initializer_list<std::pair<std::string, Tensor>> named) : items(named) {}
  ParameterList(const std::vector<Tensor>& tensors);
  ParameterList(std::initializer_list<Tensor> tensors);
  NamedParameters items;
};

class Optimizer {
 public:
  virtual ~Optimizer() = default;
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  // The class name used in messages ("SGD", "AdamW").
  const std::string& type_name() const { return type_name_; }

  // One update of every parameter that has a gradient (the others are skipped and keep their
  // state); then step_count() goes up by one.
  void step();
  // Drops every parameter's gradient (torch's set_to_none).
  void zero_grad();

  // The learning rate of the next step(); set it from a schedule before each step.
  double lr() const { return lr_; }
  void set_lr(double lr);
  // The number of step() calls so far (restored by load_state_dict).
  int64_t step_count() const { return step_count_; }
  const NamedParameters& named_parameters() const { return params_; }

  // A snapshot (copies, so training on does not change it): "step" (i64 scalar: step_count()),
  // and for every parameter that has state "<name>.step" (i64 scalar: the updates it received)
  // and "<name>.<slot>" for each of the optimizer's slots. Hyperparameters are not included: they
  // come from the constructor, and the learning rate from the schedule at step_count().
  StateDict state_dict() const;
  // Replaces the whole state with copies of `state` (moved to each parameter's device and dtype).
  // Everything is validated before anything changes: unexpected keys, a parameter with only part
  // of its keys, a missing "step", shape mismatches and bad step values are rw::Errors that name
  // every offending key. A parameter with none of its keys gets no state (as if never updated).
  void load_state_dict(const StateDict& state);

 protected:
  // `type_name` names the optimizer in messages; `lr` is validated like set_lr.
  Optimizer(std::string type_name, ParameterList params, double lr);

  // One named state tensor kept per parameter, with the parameter's dtype.
  struct Slot {
    std::string name;
    Shape shape;
  };
  struct ParamState {
    int64_t step = 0;           // updates applied to this parameter; 0: no state yet
    std::vector<Tensor> slots;  // in slots_for() order
  };

  // For the options' checks of derived constructors: "<type name>: invalid <what>: <value>".
  void check_option(bool ok, const char* what, double value) const;

  // The slots this optimizer keeps for `param` (may depend on its shape and on the options).
  virtual std::vector<Slot> slots_for(const Tensor& param) const = 0;
  // Updates `param` in place from `grad` (same shape, dtype and device); grad mode is off.
  // state.step already counts this update, so it is 1 on the first call, when every slot is zero.
  virtual void update(const Tensor& param, const Tensor& grad, ParamState& state) = 0;

 private:
  std::string type_name_;
  NamedParameters params_;
  std::vector<ParamState> states_;  // parallel to params_
  double lr_ = 0;
  int64_t step_count_ = 0;
};

}  // namespace rw::nn
