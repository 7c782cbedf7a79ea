#pragma once
// oneDNN plumbing shared by the CPU kernels: the engine, a stream per thread, dtype mapping, and a
// process-wide cache of primitives keyed by their full descriptor. Creating a primitive descriptor
// and JIT-compiling its kernel costs tens of microseconds to milliseconds; a training loop repeats
// the same few shapes, so each distinct (kind, dims, strides, dtypes, flags) is built once.
#include <algorithm>
#include <array>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <optional>
#include <span>
#include <utility>
#include <vector>

#include <oneapi/dnnl/dnnl.hpp>

#include "core/dtype.h"
#include "core/error.h"
#include "core/shape.h"

namespace rw::cpu {

dnnl::engine& dnnl_engine();
// Streams are not safe to share between threads that execute concurrently, so each thread has one.
dnnl::stream& dnnl_stream();
// The oneDNN type of a dtype; nullopt for dtypes oneDNN does not compute in here.
std::optional<dnnl::memory::data_type> dnnl_dtype(DType dtype);

// A cache key: a flat list of integers that the kernel fills with everything its primitive
// depends on, starting with a tag naming the primitive kind. Stored inline (no allocation: a
// cache hit must cost next to nothing).
class PrimitiveKey {
 public:
  static constexpr std::size_t kCapacity = 96;
  explicit PrimitiveKey(int64_t kind) { add(kind); }
  PrimitiveKey& add(int64_t v) {
    RW_ASSERT(size_ < kCapacity);
    values_[size_++] = v;
    return *this;
  }
  PrimitiveKey& add(std::span<const int64_t> vs) {
    add(static_cast<int64_t>(vs.size()));  // keeps lists of different length apart
    for (int64_t v : vs) add(v);
    return *this;
  }
  std::span<const int64_t> values() const { return {values_.data(), size_}; }
  std::size_t hash() const;
  friend bool operator==(const PrimitiveKey& a, const PrimitiveKey& b) {
    return std::ranges::equal(a.values(), b.values());
  }

 private:
  std::array<int64_t, kCapacity> values_;
  std::size_t size_ = 0;
};

// What the cache holds per key. `primitive` may be empty: the kernel remembers that oneDNN has no
// acceptable implementation for this key and takes its fallback path without asking again.
// `descs` are the memory descriptors of the arguments, in an order the kernel chooses, so a hit
// builds none; `variant` is free for the kernel (e.g. which operands it must copy first).
struct CachedPrimitive {
  CachedPrimitive() = default;
  CachedPrimitive(dnnl::primitive p, std::vector<dnnl::memory::desc> d = {}, int64_t v = 0)
      : primitive(std::move(p)), descs(std::move(d)), variant(v) {}
  dnnl::primitive primitive;
  std::vector<dnnl::memory::desc> descs;
  int64_t variant = 0;
};
// Shared and immutable: a hit costs one reference-count increment, and an entry evicted while a
// caller still uses it stays alive until that caller is done.
using CachedEntry = std::shared_ptr<const CachedPrimitive>;

// The process-wide cache (thread-safe). Least-recently-used entries are evicted beyond a fixed
// capacity. find_primitive returns null on a miss; insert_primitive keeps the entry another
// thread may have inserted first and returns the one in the cache.
CachedEntry find_primitive(const PrimitiveKey& key);
CachedEntry insert_primitive(const PrimitiveKey& key, CachedPrimitive entry);

// Returns the cached entry of `key`, building it with `make()` on a miss. `make` runs outside the
// lock (two threads missing at once may both build; the first insert wins).
template <typename Make>
CachedEntry cached_entry(const PrimitiveKey& key, Make&& make) {
  if (CachedEntry hit = find_primitive(key)) return hit;
  return insert_primitive(key, make());
}
// The same, returning a copy of the entry (cheap when it has no descriptors).
template <typename Make>
CachedPrimitive cached_primitive(const PrimitiveKey& key, Make&& make) {
  return *cached_entry(key, std::forward<Make>(make));
}

// A memory object over existing data (no copy).
inline dnnl::memory dnnl_memory(const dnnl::memory::desc& md, const void* data) {
  return dnnl::memory(md, dnnl_engine(), const_cast<void*>(data));
}

// Executes a primitive on this thread's stream and waits for it. `args` pairs DNNL_ARG_* with
// (descriptor, data pointer); the memory objects live only for the call.
struct ExecArg {
  int arg;
  const dnnl::memory::desc* desc;
  const void* data;
};
void execute(const dnnl::primitive& primitive, std::initializer_list<ExecArg> args);
void execute(const dnnl::primitive& primitive, std::span<const ExecArg> args);

struct PrimitiveCacheStats {
  int64_t hits = 0;
  int64_t misses = 0;
  int64_t size = 0;
};
PrimitiveCacheStats primitive_cache_stats();

// True when oneDNN picked its slow reference implementation ("ref:any"), which the kernels treat
// as "not supported" so they can take a faster path (a contiguous copy, or their own loops).
bool is_reference_impl(const dnnl::primitive_desc_base& pd);

}  // namespace rw::cpu
