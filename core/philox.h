#pragma once
// Counter-based RNG: Philox4x32-10 (Salmon et al., SC'11). A random tensor is a pure function of
// (seed, stream, counter), so it can be regenerated exactly later (reversible layers replay dropout
// masks and LSH rotations) and the GPU produces the same numbers as the CPU.
//
// Mapping used by every backend: key = (lo32(seed), hi32(seed)); the 128-bit counter of block j is
// (lo32(c), hi32(c), lo32(stream), hi32(stream)) with c = state.counter + j. Element i of a random
// tensor takes word i % 4 of block i / 4. A word w becomes the uniform u = (w + 0.5) / 2^32 in (0,
// 1). Normals use Box-Muller on the word pairs (0,1) and (2,3) of a block: z = r cos(t), r sin(t).
#include <cstdint>

#include <array>

#if defined(__CUDACC__)
#define RW_HOST_DEVICE __host__ __device__
#else
#define RW_HOST_DEVICE
#endif

namespace rw {

struct PhiloxState {
  uint64_t seed = 0;
  uint64_t stream = 0;
  uint64_t counter = 0;  // in blocks of four 32-bit words
  friend bool operator==(const PhiloxState&, const PhiloxState&) = default;
};

struct PhiloxBlock {
  uint32_t w[4];
};

RW_HOST_DEVICE inline PhiloxBlock philox4x32_10(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3,
                                                uint32_t k0, uint32_t k1) {
  constexpr uint32_t kMul0 = 0xD2511F53u, kMul1 = 0xCD9E8D57u;
  constexpr uint32_t kWeyl0 = 0x9E3779B9u, kWeyl1 = 0xBB67AE85u;
  for (int round = 0; round < 10; ++round) {
    uint64_t p0 = static_cast<uint64_t>(kMul0) * c0;
    uint64_t p1 = static_cast<uint64_t>(kMul1) * c2;
    uint32_t hi0 = static_cast<uint32_t>(p0 >> 32), lo0 = static_cast<uint32_t>(p0);
    uint32_t hi1 = static_cast<uint32_t>(p1 >> 32), lo1 = static_cast<uint32_t>(p1);
    c0 = hi1 ^ c1 ^ k0;
    c1 = lo1;
    c2 = hi0 ^ c3 ^ k1;
    c3 = lo0;
    k0 += kWeyl0;
    k1 += kWeyl1;
  }
  return {{c0, c1, c2, c3}};
}

// Block `j` of the stream at `state`.
RW_HOST_DEVICE inline PhiloxBlock philox_block(const PhiloxState& state, uint64_t j) {
  uint64_t c = state.counter + j;
  return philox4x32_10(static_cast<uint32_t>(c), static_cast<uint32_t>(c >> 32),
                       static_cast<uint32_t>(state.stream),
                       static_cast<uint32_t>(state.stream >> 32), static_cast<uint32_t>(state.seed),
                       static_cast<uint32_t>(state.seed >> 32));
}

RW_HOST_DEVICE inline double philox_uniform(uint32_t w) {
  return (static_cast<double>(w) + 0.5) * (1.0 / 4294967296.0);
}

// A source of Philox states. Each draw of n elements takes the next ceil(n / 4) blocks.
class Generator {
 public:
  explicit Generator(uint64_t seed = 0, uint64_t stream = 0) : state_{seed, stream, 0} {}

  // Restarts the stream at counter 0 with a new seed.
  void seed(uint64_t seed) { state_ = {seed, state_.stream, 0}; }
  uint64_t initial_seed() const { return state_.seed; }
  PhiloxState state() const { return state_; }
  void set_state(PhiloxState state) { state_ = state; }

  // The state to generate `numel` elements from; advances past them.
  PhiloxState next(int64_t numel) {
    PhiloxState s = state_;
    state_.counter += static_cast<uint64_t>((numel + 3) / 4);
    return s;
  }
  // A generator on a new stream, independent of this one and of other forks; advances this one.
  Generator fork();
  // The i-th child stream of this generator's current state, without advancing it (the same i
  // gives the same child: used to key per-layer randomness).
  Generator split(uint64_t i) const;

 private:
  PhiloxState state_;
};

// The process-wide generator used when an op is given none.
Generator& default_generator();
void manual_seed(uint64_t seed);

}  // namespace rw
