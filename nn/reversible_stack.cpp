#include "nn/reversible_stack.h"

#include <vector>

namespace rw::nn {

ReversibleLayer::ReversibleLayer(std::shared_ptr<Module> f_module,
                                 std::shared_ptr<Module> g_module) {
  RW_CHECK(f_module != nullptr && g_module != nullptr,
           "ReversibleLayer: f and g must both be modules (got a null {})",
           f_module == nullptr ? "f" : "g");
  f = register_module("f", std::move(f_module));
  g = register_module("g", std::move(g_module));
}

ReversibleStack::ReversibleStack(bool reversible)
    : layers_(register_module("layers", std::make_shared<ModuleList>())), reversible_(reversible) {}

void ReversibleStack::push_back(std::shared_ptr<Module> f, std::shared_ptr<Module> g) {
  layers_->push_back(std::make_shared<ReversibleLayer>(std::move(f), std::move(g)));
}

const ReversibleLayer& ReversibleStack::layer(std::size_t i) const {
  return *layers_->get<ReversibleLayer>(i);
}

std::pair<Tensor, Tensor> ReversibleStack::forward(const Tensor& x1, const Tensor& x2) {
  std::vector<ReversibleBlock> blocks;
  blocks.reserve(layers_->size());
  for (std::size_t i = 0; i < layers_->size(); ++i) {
    const ReversibleLayer& l = layer(i);
    blocks.push_back({.f = reversible_function(l.f), .g = reversible_function(l.g)});
  }
  return reversible_stack(blocks, x1, x2,
                          {.reversible = reversible_, .on_reconstructed = on_reconstructed});
}

Tensor ReversibleStack::forward(const Tensor& x) {
  auto [x1, x2] = split_copies(x);
  auto [y1, y2] = forward(x1, x2);
  return join_mean(y1, y2);
}

}  // namespace rw::nn
