#pragma once
// Module containers, as torch.nn.Sequential and torch.nn.ModuleList. Children are named by their
// index ("0", "1", ...), so parameters read "layers.3.w1.weight".
//
//   auto mlp = std::make_shared<rw::nn::Sequential>(
//       std::make_shared<rw::nn::Linear>(4, 16), std::make_shared<rw::nn::ReLU>(),
//       std::make_shared<rw::nn::Linear>(16, 2));
//   rw::Tensor y = mlp->forward(x);
//
//   auto blocks = std::make_shared<rw::nn::ModuleList>();
//   for (int i = 0; i < 6; ++i) blocks->push_back(std::make_shared<Block>(...));
//   for (auto& block : *blocks) x = block->forward(x);
#include <cstddef>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "core/error.h"
#include "core/tensor.h"
#include "nn/module.h"

namespace rw::nn {

// An indexable list of child modules. Registered children cannot be removed (as in Module).
class ModuleList : public Module {
 public:
  ModuleList() = default;
  explicit ModuleList(std::vector<std::shared_ptr<Module>> modules);
  template <typename... M>
  requires(sizeof...(M) > 0 && (std::is_base_of_v<Module, M> &&
                                ...)) explicit ModuleList(std::shared_ptr<M>... modules) {
    (push_back(std::move(modules)), ...);
  }

  std::string type_name() const override { return "ModuleList"; }

  // Appends `module` as child str(size()).
  void push_back(std::shared_ptr<Module> module);
  std::size_t size() const { return modules_.size(); }
  bool empty() const { return modules_.empty(); }
  // An rw::Error naming the index and the size when out of range.
  const std::shared_ptr<Module>& operator[](std::size_t i) const;
  // The i-th module as an M: an rw::Error when it is of another type.
  template <typename M>
  std::shared_ptr<M> get(std::size_t i) const {
    auto m = std::dynamic_pointer_cast<M>((*this)[i]);
    RW_CHECK(m != nullptr, "{}: module {} is a {}, not the type asked for", type_name(), i,
             (*this)[i]->type_name());
    return m;
  }
  auto begin() const { return modules_.begin(); }
  auto end() const { return modules_.end(); }

 private:
  std::vector<std::shared_ptr<Module>> modules_;
};

// A ModuleList whose forward chains its modules' single-tensor forwards in order (an empty
// Sequential is the identity).
class Sequential : public ModuleList {
 public:
  Sequential() = default;
  // (Not inherited constructors: while ModuleList's constructor runs, type_name() would still say
  // "ModuleList" in any error message.)
  explicit Sequential(std::vector<std::shared_ptr<Module>> modules) {
    for (auto& m : modules) push_back(std::move(m));
  }
  template <typename... M>
  requires(sizeof...(M) > 0 && (std::is_base_of_v<Module, M> &&
                                ...)) explicit Sequential(std::shared_ptr<M>... modules) {
    (push_back(std::move(modules)), ...);
  }
  std::string type_name() const override { return "Sequential"; }
  Tensor forward(const Tensor& x) override;
};

}  // namespace rw::nn
