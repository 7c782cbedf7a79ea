#pragma once
// The generator that random layers draw from (dropout masks, LSH rotations, initialisers given
// none). It is the process default unless a GeneratorScope on this thread installs another: the
// reversible-graph API runs each block under a generator keyed in forward, so the recomputation in
// backward draws exactly the same numbers.
#include "core/philox.h"

namespace rw {

// The innermost scope's generator on this thread, else default_generator().
Generator& current_generator();

class GeneratorScope {
 public:
  explicit GeneratorScope(Generator& generator);
  ~GeneratorScope();
  GeneratorScope(const GeneratorScope&) = delete;
  GeneratorScope& operator=(const GeneratorScope&) = delete;

 private:
  Generator* previous_;
};

}  // namespace rw
