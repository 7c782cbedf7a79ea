#pragma once
// Module: the base of every layer and model. A module owns named parameters (trainable leaf
// tensors), named buffers (state that is saved but not trained) and named child modules; names
// compose with dots ("blocks.3.attn.w_qk") exactly as in PyTorch's state_dict.
//
// Modules are created with std::make_shared and are neither copyable nor movable: the registry
// keeps pointers to the members that hold the tensors, so `to(device)` and `load_state_dict`
// update the module's own fields.
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"

namespace rw::nn {

using StateDict = std::map<std::string, Tensor>;

// What a non-strict load_state_dict skipped (a strict load throws instead).
struct LoadResult {
  std::vector<std::string> missing_keys;     // in the module, not in the state dict
  std::vector<std::string> unexpected_keys;  // in the state dict, not in the module
};

class Module {
 public:
  Module() = default;
  virtual ~Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  // The class name used in messages ("Linear", "ReformerLM").
  virtual std::string type_name() const = 0;

  // Single-tensor forward for modules that have one (Sequential calls it); others throw an
  // rw::Error naming the module.
  virtual Tensor forward(const Tensor& x);
  Tensor operator()(const Tensor& x) { return forward(x); }

  // Registration order, depth first, own entries before the children's; dotted names.
  std::vector<std::pair<std::string, Tensor>> named_parameters() const;
  std::vector<Tensor> parameters() const;
  std::vector<std::pair<std::string, Tensor>> named_buffers() const;
  // This module ("") and every descendant.
  std::vector<std::pair<std::string, Module*>> named_modules();
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> named_children() const;
  // The total number of parameter elements.
  int64_t num_parameters() const;

  // Training mode (dropout active) for this module and every descendant.
  void train(bool on = true);
  void eval() { train(false); }
  bool is_training() const { return training_; }

  void zero_grad();
  // Moves (or converts: floating parameters and buffers only) every tensor; parameters stay
  // leaves that require grad. Build optimizers after moving a model: the tensors are new.
  void to(Device device);
  void to(DType dtype);

  // Parameters and buffers by dotted name (detached; sharing the module's storage).
  StateDict state_dict() const;
  // Copies values into the module's tensors (converting dtype, moving device as needed). A shape
  // mismatch is always an error naming the key and both shapes; strict mode also fails on missing
  // and unexpected keys (naming all of them), non-strict mode reports them.
  LoadResult load_state_dict(const StateDict& state, bool strict = true);

 protected:
  // `slot` is a member of the derived module; it becomes a leaf that requires grad.
  void register_parameter(std::string name, Tensor& slot);
  void register_buffer(std::string name, Tensor& slot);
  // A projection: `weight_slot` = `weight`, registered as `weight_name`, and with `bias` a zero
  // bias of weight.size(0) elements in `bias_slot`, registered as `bias_name` (PyTorch initialises
  // attention projection biases to zero).
  void register_projection(std::string weight_name, Tensor& weight_slot, Tensor weight,
                           std::string bias_name, Tensor& bias_slot, bool bias);
  template <typename M>
  std::shared_ptr<M> register_module(std::string name, std::shared_ptr<M> module) {
    add_child(std::move(name), module);
    return module;
  }

 private:
  void add_child(std::string name, std::shared_ptr<Module> module);
  void check_new_name(const std::string& name) const;
  template <typename F>
  void for_each_tensor(const std::string& prefix, bool params, bool buffers, F&& f) const;

  std::vector<std::pair<std::string, Tensor*>> parameters_;
  std::vector<std::pair<std::string, Tensor*>> buffers_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
  bool training_ = true;
};

}  // namespace rw::nn
