#include "nn/containers.h"

#include <utility>

namespace rw::nn {

ModuleList::ModuleList(std::vector<std::shared_ptr<Module>> modules) {
  for (auto& m : modules) push_back(std::move(m));
}

void ModuleList::push_back(std::shared_ptr<Module> module) {
  RW_CHECK(module != nullptr, "{}: cannot add a null module at index {}", type_name(),
           modules_.size());
  register_module(std::to_string(modules_.size()), module);
  modules_.push_back(std::move(module));
}

const std::shared_ptr<Module>& ModuleList::operator[](std::size_t i) const {
  RW_CHECK(i < modules_.size(), "{}: index {} is out of range for {} modules", type_name(), i,
           modules_.size());
  return modules_[i];
}

Tensor Sequential::forward(const Tensor& x) {
  Tensor y = x;
  for (const auto& m : *this) y = m->forward(y);
  return y;
}

}  // namespace rw::nn
