#include "nn/module.h"

#include <fmt/ranges.h>

#include <set>

#include "autograd/tape.h"
#include "core/error.h"
#include "core/ops.h"

namespace rw::nn {

Tensor Module::forward(const Tensor&) {
  throw Error(fmt::format("{}: this module has no single-tensor forward", type_name()));
}

void Module::check_new_name(const std::string& name) const {
  RW_CHECK(!name.empty() && name.find('.') == std::string::npos,
           "{}: invalid member name '{}' (non-empty, no dots)", type_name(), name);
  auto taken = [&](const auto& list) {
    for (const auto& [n, _] : list) {
      if (n == name) return true;
    }
    return false;
  };
  RW_CHECK(!taken(parameters_) && !taken(buffers_) && !taken(children_),
           "{}: the name '{}' is registered twice", type_name(), name);
}

void Module::register_parameter(std::string name, Tensor& slot) {
  check_new_name(name);
  RW_CHECK(slot.defined(), "{}: parameter '{}' is undefined", type_name(), name);
  RW_CHECK(is_floating(slot.dtype()), "{}: parameter '{}' must be floating, got {}", type_name(),
           name, slot.dtype());
  if (!slot.is_leaf()) slot = slot.detach();
  slot.requires_grad_(true);
  parameters_.emplace_back(std::move(name), &slot);
}

void Module::register_projection(std::string weight_name, Tensor& weight_slot, Tensor weight,
                                 std::string bias_name, Tensor& bias_slot, bool bias) {
  weight_slot = std::move(weight);
  register_parameter(std::move(weight_name), weight_slot);
  if (!bias) return;
  bias_slot = zeros({weight_slot.size(0)}, options_of(weight_slot));
  register_parameter(std::move(bias_name), bias_slot);
}

void Module::register_buffer(std::string name, Tensor& slot) {
  check_new_name(name);
  RW_CHECK(slot.defined(), "{}: buffer '{}' is undefined", type_name(), name);
  buffers_.emplace_back(std::move(name), &slot);
}

void Module::add_child(std::string name, std::shared_ptr<Module> module) {
  check_new_name(name);
  RW_CHECK(module != nullptr, "{}: child module '{}' is null", type_name(), name);
  children_.emplace_back(std::move(name), std::move(module));
}

template <typename F>
void Module::for_each_tensor(const std::string& prefix, bool params, bool buffers, F&& f) const {
  if (params) {
    for (const auto& [name, slot] : parameters_) f(prefix + name, *slot);
  }
  if (buffers) {
    for (const auto& [name, slot] : buffers_) f(prefix + name, *slot);
  }
  for (const auto& [name, child] : children_) {
    child->for_each_tensor(prefix + name + ".", params, buffers, f);
  }
}

std::vector<std::pair<std::string, Tensor>> Module::named_parameters() const {
  std::vector<std::pair<std::string, Tensor>> out;
  for_each_tensor("", true, false,
                  [&](const std::string& n, Tensor& t) { out.emplace_back(n, t); });
  return out;
}

std::vector<Tensor> Module::parameters() const {
  std::vector<Tensor> out;
  for_each_tensor("", true, false, [&](const std::string&, Tensor& t) { out.push_back(t); });
  return out;
}

std::vector<std::pair<std::string, Tensor>> Module::named_buffers() const {
  std::vector<std::pair<std::string, Tensor>> out;
  for_each_tensor("", false, true,
                  [&](const std::string& n, Tensor& t) { out.emplace_back(n, t); });
  return out;
}

std::vector<std::pair<std::string, Module*>> Module::named_modules() {
  std::vector<std::pair<std::string, Module*>> out{{"", this}};
  for (const auto& [name, child] : children_) {
    for (auto& [sub, m] : child->named_modules()) {
      out.emplace_back(sub.empty() ? name : name + "." + sub, m);
    }
  }
  return out;
}

std::vector<std::pair<std::string, std::shared_ptr<Module>>> Module::named_children() const {
  return children_;
}

int64_t Module::num_parameters() const {
  int64_t n = 0;
  for_each_tensor("", true, false, [&](const std::string&, Tensor& t) { n += t.numel(); });
  return n;
}

void Module::train(bool on) {
  training_ = on;
  for (auto& [_, child] : children_) child->train(on);
}

void Module::zero_grad() {
  for_each_tensor("", true, false, [](const std::string&, Tensor& t) { t.zero_grad(); });
}

void Module::to(Device device) {
  NoGradGuard no_grad;
  for (auto& [_, slot] : parameters_) {
    if (slot->device() != device) *slot = slot->to(device).detach().requires_grad_(true);
  }
  for (auto& [_, slot] : buffers_) {
    if (slot->device() != device) *slot = slot->to(device);
  }
  for (auto& [_, child] : children_) child->to(device);
}

void Module::to(DType dtype) {
  RW_CHECK(is_floating(dtype), "{}.to: modules convert to floating dtypes only, got {}",
           type_name(), dtype);
  NoGradGuard no_grad;
  for (auto& [_, slot] : parameters_) {
    if (slot->dtype() != dtype) *slot = slot->to(dtype).detach().requires_grad_(true);
  }
  for (auto& [_, slot] : buffers_) {
    if (is_floating(slot->dtype()) && slot->dtype() != dtype) *slot = slot->to(dtype);
  }
  for (auto& [_, child] : children_) child->to(dtype);
}

StateDict Module::state_dict() const {
  StateDict out;
  for_each_tensor("", true, true,
                  [&](const std::string& n, Tensor& t) { out.emplace(n, t.detach()); });
  return out;
}

LoadResult Module::load_state_dict(const StateDict& state, bool strict) {
  LoadResult result;
  std::vector<std::pair<std::string, Tensor*>> targets;
  for_each_tensor("", true, true,
                  [&](const std::string& n, Tensor& t) { targets.emplace_back(n, &t); });
  std::set<std::string> known;
  std::vector<std::string> mismatched;
  for (const auto& [name, slot] : targets) {
    known.insert(name);
    auto it = state.find(name);
    if (it == state.end()) {
      result.missing_keys.push_back(name);
    } else if (it->second.shape() != slot->shape()) {
      mismatched.push_back(fmt::format("{}: checkpoint shape {} vs model shape {}", name,
                                       it->second.shape(), slot->shape()));
    }
  }
  for (const auto& [name, _] : state) {
    if (!known.contains(name)) result.unexpected_keys.push_back(name);
  }
  RW_CHECK(mismatched.empty(), "{}.load_state_dict: shape mismatch for {}", type_name(),
           fmt::join(mismatched, "; "));
  if (strict) {
    RW_CHECK(result.missing_keys.empty() && result.unexpected_keys.empty(),
             "{}.load_state_dict (strict): missing keys [{}]; unexpected keys [{}]", type_name(),
             fmt::join(result.missing_keys, ", "), fmt::join(result.unexpected_keys, ", "));
  }
  // Every check passed: copy in place, so tensors held elsewhere (optimizers) see the values.
  NoGradGuard no_grad;
  for (const auto& [name, slot] : targets) {
    auto it = state.find(name);
    if (it != state.end()) copy_(*slot, it->second.to(slot->device()));
  }
  return result;
}

}  // namespace rw::nn
