#pragma once
// A reversible residual stack of modules (autograd/reversible.h) as a Module: layer i holds two
// children, f and g, and maps (x1, x2) to (x1 + f(x2), x2 + g(y1)). Parameters are named
// "layers.<i>.f.<...>" and "layers.<i>.g.<...>".
//
//   auto stack = std::make_shared<rw::nn::ReversibleStack>();
//   for (int i = 0; i < 12; ++i) stack->push_back(make_attention(), make_feed_forward());
//   rw::Tensor y = stack->forward(x);          // split_copies -> the stack -> join_mean
//   auto [y1, y2] = stack->forward(x1, x2);    // the two halves, for another join
//   stack->set_reversible(false);              // the same layers as a plain residual stack
//
// Functions that need more than one tensor (an attention with a padding mask) are wrapped in
// closures and run through rw::reversible_stack directly; this module is for f and g that are
// modules with a single-tensor forward.
#include <memory>
#include <string>
#include <utility>

#include "autograd/reversible.h"
#include "nn/containers.h"
#include "nn/module.h"

namespace rw::nn {

// One block of a ReversibleStack: the children f and g.
class ReversibleLayer : public Module {
 public:
  ReversibleLayer(std::shared_ptr<Module> f, std::shared_ptr<Module> g);
  std::string type_name() const override { return "ReversibleLayer"; }
  std::shared_ptr<Module> f, g;
};

class ReversibleStack : public Module {
 public:
  explicit ReversibleStack(bool reversible = true);
  std::string type_name() const override { return "ReversibleStack"; }

  void push_back(std::shared_ptr<Module> f, std::shared_ptr<Module> g);
  std::size_t size() const { return layers_->size(); }
  const ReversibleLayer& layer(std::size_t i) const;

  // (x1, x2) -> (y1, y2) through every layer.
  std::pair<Tensor, Tensor> forward(const Tensor& x1, const Tensor& x2);
  // join_mean of forward(x, x).
  Tensor forward(const Tensor& x) override;

  bool reversible() const { return reversible_; }
  void set_reversible(bool reversible) { reversible_ = reversible; }
  // Called in backward with each layer's recovered inputs (reversible mode; see
  // ReversibleOptions::on_reconstructed).
  ReconstructionHook on_reconstructed;

 private:
  std::shared_ptr<ModuleList> layers_;
  bool reversible_;
};

}  // namespace rw::nn
