#include "core/philox.h"

namespace rw {
namespace {
// Derives a child stream id by running Philox on (counter, stream, i, tag): distinct inputs give
// unrelated 64-bit outputs.
uint64_t derive_stream(const PhiloxState& s, uint64_t i) {
  PhiloxBlock b = philox4x32_10(
      static_cast<uint32_t>(s.counter), static_cast<uint32_t>(s.counter >> 32),
      static_cast<uint32_t>(s.stream) ^ static_cast<uint32_t>(i),
      static_cast<uint32_t>(s.stream >> 32) ^ static_cast<uint32_t>(i >> 32) ^ 0x5EED5EEDu,
      static_cast<uint32_t>(s.seed), static_cast<uint32_t>(s.seed >> 32));
  return (static_cast<uint64_t>(b.w[1]) << 32) | b.w[0];
}
}  // namespace

Generator Generator::fork() {
  Generator child(state_.seed, derive_stream(state_, ~uint64_t{0}));
  state_.counter += 1;
  return child;
}

Generator Generator::split(uint64_t i) const {
  return Generator(state_.seed, derive_stream(state_, i));
}

Generator& default_generator() {
  thread_local Generator gen(0);
  return gen;
}

void manual_seed(uint64_t seed) { default_generator().seed(seed); }

}  // namespace rw
