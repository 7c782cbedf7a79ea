#include "autograd/function.h"

#include <memory>

namespace rw {

void FunctionContext::save_for_backward(std::vector<Tensor> tensors) {
  saved_.clear();
  saved_.reserve(tensors.size());
  for (const Tensor& t : tensors) saved_.emplace_back(t);
}

const Tensor& FunctionContext::saved(std::size_t i) const {
  RW_CHECK(i < saved_.size(), "{}: saved tensor {} requested but only {} were saved", name_, i,
           saved_.size());
  return saved_[i].get(name_);
}

std::vector<Tensor> FunctionContext::saved_tensors() const {
  std::vector<Tensor> out;
  out.reserve(saved_.size());
  for (std::size_t i = 0; i < saved_.size(); ++i) out.push_back(saved(i));
  return out;
}

bool FunctionContext::needs_input_grad(std::size_t i) const {
  RW_CHECK(i < needs_input_grad_.size(), "{}: needs_input_grad({}) but the function has {} inputs",
           name_, i, needs_input_grad_.size());
  return needs_input_grad_[i];
}

namespace {

// What backward needs to validate an input's gradient, without keeping the input's data.
struct InputInfo {
  Shape shape;
  DType dtype = DType::f32;
  Device device;
  bool needs_grad = false;
};

}  // namespace

std::vector<Tensor> CustomFunction::apply(std::vector<Tensor> inputs) const {
  RW_CHECK(static_cast<bool>(forward), "{}: the custom function has no forward", name);
  RW_CHECK(static_cast<bool>(backward), "{}: the custom function has no backward", name);
  const bool recording = needs_grad(std::span<const Tensor>(inputs));

  auto ctx = std::make_shared<FunctionContext>();
  ctx->name_ = name;
  std::vector<InputInfo> infos(inputs.size());
  std::vector<Tensor> detached(inputs.size());
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    if (!inputs[i].defined()) continue;
    infos[i] = {.shape = inputs[i].shape(),
                .dtype = inputs[i].dtype(),
                .device = inputs[i].device(),
                .needs_grad = recording && inputs[i].requires_grad()};
    detached[i] = inputs[i].detach();
  }
  ctx->needs_input_grad_.resize(inputs.size());
  for (std::size_t i = 0; i < inputs.size(); ++i) ctx->needs_input_grad_[i] = infos[i].needs_grad;

  std::vector<Tensor> outputs;
  {
    NoGradGuard no_grad;
    outputs = forward(*ctx, detached);
  }
  RW_CHECK(!outputs.empty(), "{}: forward returned no outputs", name);
  for (std::size_t k = 0; k < outputs.size(); ++k) {
    RW_CHECK(outputs[k].defined(), "{}: forward output {} is an undefined tensor", name, k);
    // A fresh handle per output: forward may return an input (or one tensor twice), and recording
    // must not attach autograd metadata to a handle anyone else holds.
    outputs[k] = outputs[k].detach();
  }
  if (!recording) return outputs;

  std::vector<Tensor> differentiable;
  std::vector<std::size_t> differentiable_index;
  for (std::size_t k = 0; k < outputs.size(); ++k) {
    if (!is_floating(outputs[k].dtype())) continue;
    differentiable.push_back(outputs[k]);
    differentiable_index.push_back(k);
  }
  if (differentiable.empty()) return outputs;

  record(name, inputs, differentiable,
         [ctx, fn = backward, name = name, num_outputs = outputs.size(),
          index = std::move(differentiable_index),
          infos = std::move(infos)](std::span<const Tensor> grads) -> std::vector<Tensor> {
           std::vector<Tensor> grad_outputs(num_outputs);
           for (std::size_t k = 0; k < index.size(); ++k) grad_outputs[index[k]] = grads[k];
           std::vector<Tensor> grad_inputs = fn(*ctx, grad_outputs);
           RW_CHECK(grad_inputs.size() == infos.size(),
                    "{}: backward returned {} gradients for {} inputs (return one entry per "
                    "input, Tensor() where there is none)",
                    name, grad_inputs.size(), infos.size());
           for (std::size_t i = 0; i < infos.size(); ++i) {
             Tensor& g = grad_inputs[i];
             if (!infos[i].needs_grad || !g.defined()) {
               g = Tensor();
               continue;
             }
             RW_CHECK(g.shape() == infos[i].shape,
                      "{}: backward returned a gradient of shape {} for input {} of shape {}", name,
                      g.shape(), i, infos[i].shape);
             RW_CHECK(g.device() == infos[i].device,
                      "{}: backward returned a gradient on {} for input {} on {}", name, g.device(),
                      i, infos[i].device);
             RW_CHECK(is_floating(g.dtype()),
                      "{}: backward returned a gradient of dtype {} for input {} (expected a "
                      "floating dtype)",
                      name, g.dtype(), i);
             if (g.dtype() != infos[i].dtype) g = g.to(infos[i].dtype);
           }
           return grad_inputs;
         });
  return outputs;
}

Tensor CustomFunction::apply1(std::vector<Tensor> inputs) const {
  std::vector<Tensor> outputs = apply(std::move(inputs));
  RW_CHECK(outputs.size() == 1, "{}: apply1 needs exactly one output, forward returned {}", name,
           outputs.size());
  return outputs[0];
}

}  // namespace rw
