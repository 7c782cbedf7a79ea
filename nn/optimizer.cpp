#include "nn/optimizer.h"

#include <fmt/ranges.h>

#include <cmath>
#include <map>
#include <optional>

#include "autograd/tape.h"
#include "core/error.h"
#include "core/ops.h"

namespace rw::nn {

namespace {

NamedParameters name_by_position(const std::vector<Tensor>& tensors) {
  NamedParameters named;
  named.reserve(tensors.size());
  for (std::size_t i = 0; i < tensors.size(); ++i)
    named.emplace_back(std::to_string(i), tensors[i]);
  return named;
}

Tensor i64_scalar(int64_t value) { return from_vector<int64_t>({value}, Shape{}); }

// A step counter read back from a state dict: one element holding an integer >= `minimum`.
std::optional<std::string> step_value_problem(const std::string& key, const Tensor& t,
                                              int64_t minimum) {
  if (t.numel() != 1) {
    return fmt::format("{}: a step counter has one element, got shape {}", key, t.shape());
  }
  double v = t.item<double>();
  if (!std::isfinite(v) || std::floor(v) != v || v < static_cast<double>(minimum)) {
    return fmt::format("{}: a step counter must be an integer >= {}, got {}", key, minimum, v);
  }
  return std::nullopt;
}

}  // namespace

ParameterList::ParameterList(const std::vector<Tensor>& tensors)
    : items(name_by_position(tensors)) {}
ParameterList::ParameterList(std::initializer_list<Tensor> tensors)
    : items(name_by_position(std::vector<Tensor>(tensors))) {}

void Optimizer::check_option(bool ok, const char* what, double value) const {
  RW_CHECK(ok, "{}: invalid {}: {}", type_name_, what, value);
}

Optimizer::Optimizer(std::string type_name, ParameterList params, double lr)
    : type_name_(std::move(type_name)), params_(std::move(params.items)) {
  RW_CHECK(!params_.empty(), "{}: got an empty parameter list", type_name_);
  std::map<std::string, std::size_t> seen;
  for (std::size_t i = 0; i < params_.size(); ++i) {
    const auto& [name, p] = params_[i];
    RW_CHECK(!name.empty(), "{}: parameter {} has an empty name", type_name_, i);
    RW_CHECK(p.defined(), "{}: parameter '{}' is undefined", type_name_, name);
    RW_CHECK(is_floating(p.dtype()), "{}: parameter '{}' must be floating, got {}", type_name_,
             name, p.dtype());
    RW_CHECK(p.is_leaf(),
             "{}: parameter '{}' is not a leaf tensor (an op's output cannot be optimized; "
             "detach it)",
             type_name_, name);
    RW_CHECK(seen.emplace(name, i).second, "{}: the parameter name '{}' appears twice", type_name_,
             name);
    for (std::size_t j = 0; j < i; ++j) {
      RW_CHECK(!params_[j].second.is_same(p), "{}: parameters '{}' and '{}' are the same tensor",
               type_name_, params_[j].first, name);
    }
  }
  states_.resize(params_.size());
  set_lr(lr);
}

void Optimizer::set_lr(double lr) {
  RW_CHECK(std::isfinite(lr) && lr >= 0, "{}: invalid learning rate: {} (finite, >= 0)", type_name_,
           lr);
  lr_ = lr;
}

void Optimizer::zero_grad() {
  for (auto& [_, p] : params_) p.zero_grad();
}

void Optimizer::step() {
  NoGradGuard no_grad;
  for (std::size_t i = 0; i < params_.size(); ++i) {
    const auto& [name, p] = params_[i];
    Tensor grad = p.grad();
    if (!grad.defined()) continue;
    RW_CHECK(grad.dtype() == p.dtype() && grad.device() == p.device(),
             "{}.step: the gradient of '{}' is {} on {}, but the parameter is {} on {}", type_name_,
             name, grad.dtype(), grad.device(), p.dtype(), p.device());
    ParamState& state = states_[i];
    if (state.step == 0) {
      state.slots.clear();
      for (const Slot& slot : slots_for(p)) state.slots.push_back(zeros(slot.shape, options_of(p)));
    }
    ++state.step;
    update(p, grad, state);
  }
  ++step_count_;
}

StateDict Optimizer::state_dict() const {
  StateDict out;
  out.emplace("step", i64_scalar(step_count_));
  for (std::size_t i = 0; i < params_.size(); ++i) {
    const auto& [name, p] = params_[i];
    const ParamState& state = states_[i];
    if (state.step == 0) continue;
    out.emplace(name + ".step", i64_scalar(state.step));
    std::vector<Slot> slots = slots_for(p);
    RW_ASSERT(slots.size() == state.slots.size());
    for (std::size_t k = 0; k < slots.size(); ++k) {
      out.emplace(name + "." + slots[k].name, state.slots[k].clone());
    }
  }
  return out;
}

void Optimizer::load_state_dict(const StateDict& state) {
  // Every key this optimizer can read, mapped to its parameter and slot (-1: the "<name>.step").
  struct Owner {
    std::size_t param;
    int slot;
  };
  std::map<std::string, Owner> owners;
  std::vector<std::vector<Slot>> slots(params_.size());
  for (std::size_t i = 0; i < params_.size(); ++i) {
    slots[i] = slots_for(params_[i].second);
    owners.emplace(params_[i].first + ".step", Owner{i, -1});
    for (std::size_t k = 0; k < slots[i].size(); ++k) {
      owners.emplace(params_[i].first + "." + slots[i][k].name, Owner{i, static_cast<int>(k)});
    }
  }

  std::vector<std::string> unexpected;
  std::vector<std::string> problems;  // shapes, dtypes and step values
  std::vector<std::map<int, Tensor>> found(params_.size());
  std::optional<int64_t> global_step;
  for (const auto& [key, t] : state) {
    RW_CHECK(t.defined(), "{}.load_state_dict: '{}' is an undefined tensor", type_name_, key);
    if (key == "step") {
      if (auto problem = step_value_problem(key, t, 0)) {
        problems.push_back(*problem);
      } else {
        global_step = static_cast<int64_t>(t.item<double>());
      }
      continue;
    }
    auto it = owners.find(key);
    if (it == owners.end()) {
      unexpected.push_back(key);
      continue;
    }
    const auto [i, k] = it->second;
    found[i].emplace(k, t);
    if (k < 0) {
      if (auto problem = step_value_problem(key, t, 1)) problems.push_back(*problem);
    } else if (t.shape() != slots[i][k].shape) {
      problems.push_back(fmt::format("{}: checkpoint shape {} vs expected shape {}", key, t.shape(),
                                     slots[i][k].shape));
    } else if (!is_floating(t.dtype())) {
      problems.push_back(fmt::format("{}: dtype {} is not floating", key, t.dtype()));
    }
  }
  // A parameter has all of its keys or none.
  std::vector<std::string> missing;
  if (!state.contains("step")) missing.emplace_back("step");
  for (std::size_t i = 0; i < params_.size(); ++i) {
    if (found[i].empty()) continue;
    const std::string& name = params_[i].first;
    if (!found[i].contains(-1)) missing.push_back(name + ".step");
    for (std::size_t k = 0; k < slots[i].size(); ++k) {
      if (!found[i].contains(static_cast<int>(k))) missing.push_back(name + "." + slots[i][k].name);
    }
  }
  std::vector<std::string> errors;
  if (!missing.empty())
    errors.push_back(fmt::format("missing keys [{}]", fmt::join(missing, ", ")));
  if (!unexpected.empty()) {
    errors.push_back(fmt::format("unexpected keys [{}]", fmt::join(unexpected, ", ")));
  }
  if (!problems.empty()) errors.push_back(fmt::format("{}", fmt::join(problems, "; ")));
  RW_CHECK(errors.empty(), "{}.load_state_dict: {}", type_name_, fmt::join(errors, "; "));

  // Every check passed: replace the state with private copies (the caller's tensors, and the
  // optimizer that produced them, must not see later updates).
  NoGradGuard no_grad;
  std::vector<ParamState> loaded(params_.size());
  for (std::size_t i = 0; i < params_.size(); ++i) {
    if (found[i].empty()) continue;
    const Tensor& p = params_[i].second;
    loaded[i].step = static_cast<int64_t>(found[i].at(-1).item<double>());
    for (std::size_t k = 0; k < slots[i].size(); ++k) {
      Tensor slot = empty(slots[i][k].shape, options_of(p));
      copy_(slot, found[i].at(static_cast<int>(k)));
      loaded[i].slots.push_back(std::move(slot));
    }
  }
  states_ = std::move(loaded);
  step_count_ = *global_step;
}

}  // namespace rw::nn
