#include "core/generator_scope.h"

namespace rw {
namespace {
thread_local Generator* t_current = nullptr;
}  // namespace

Generator& current_generator() { return t_current != nullptr ? *t_current : default_generator(); }

GeneratorScope::GeneratorScope(Generator& generator) : previous_(t_current) {
  t_current = &generator;
}

GeneratorScope::~GeneratorScope() { t_current = previous_; }

}  // namespace rw
