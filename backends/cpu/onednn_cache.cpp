#include "backends/cpu/onednn_cache.h"

#include <list>
#include <mutex>
#include <string_view>
#include <unordered_map>

namespace rw::cpu {
namespace {

struct KeyHash {
  std::size_t operator()(const PrimitiveKey& k) const { return k.hash(); }
};

// Primitives hold JIT code (a few KB to a few hundred KB each): bound the cache like oneDNN's own.
constexpr std::size_t kCapacity = 1024;

class PrimitiveCache {
 public:
  CachedEntry find(const PrimitiveKey& key) {
    std::lock_guard lock(mutex_);
    auto it = index_.find(key);
    if (it == index_.end()) {
      ++misses_;
      return nullptr;
    }
    ++hits_;
    lru_.splice(lru_.begin(), lru_, it->second);  // most recent first
    return it->second->second;
  }

  CachedEntry insert(const PrimitiveKey& key, CachedPrimitive entry) {
    auto shared = std::make_shared<const CachedPrimitive>(std::move(entry));
    std::lock_guard lock(mutex_);
    auto it = index_.find(key);
    if (it != index_.end()) return it->second->second;
    lru_.emplace_front(key, std::move(shared));
    index_.emplace(key, lru_.begin());
    if (lru_.size() > kCapacity) {
      index_.erase(lru_.back().first);
      lru_.pop_back();
    }
    return lru_.front().second;
  }

  PrimitiveCacheStats stats() {
    std::lock_guard lock(mutex_);
    return {hits_, misses_, static_cast<int64_t>(lru_.size())};
  }

 private:
  std::mutex mutex_;
  std::list<std::pair<PrimitiveKey, CachedEntry>> lru_;
  std::unordered_map<PrimitiveKey, decltype(lru_)::iterator, KeyHash> index_;
  int64_t hits_ = 0;
  int64_t misses_ = 0;
};

PrimitiveCache& cache() {
  // Leaked on purpose: primitives must not be destroyed after oneDNN's own statics at exit.
  static auto* c = new PrimitiveCache();
  return *c;
}

}  // namespace

dnnl::engine& dnnl_engine() {
  // Leaked so that thread-local streams (destroyed at thread exit) never outlive their engine.
  static auto* engine = new dnnl::engine(dnnl::engine::kind::cpu, 0);
  return *engine;
}

dnnl::stream& dnnl_stream() {
  thread_local dnnl::stream stream(dnnl_engine());
  return stream;
}

std::optional<dnnl::memory::data_type> dnnl_dtype(DType dtype) {
  using dt = dnnl::memory::data_type;
  switch (dtype) {
    case DType::f32:
      return dt::f32;
    case DType::bf16:
      return dt::bf16;
    case DType::f16:
      return dt::f16;
    case DType::i32:
      return dt::s32;
    case DType::u8:
      return dt::u8;
    default:
      return std::nullopt;
  }
}

std::size_t PrimitiveKey::hash() const {
  // FNV-1a over the 64-bit words.
  uint64_t h = 1469598103934665603ull;
  for (int64_t v : values()) {
    h ^= static_cast<uint64_t>(v);
    h *= 1099511628211ull;
  }
  return static_cast<std::size_t>(h ^ (h >> 29));
}

CachedEntry find_primitive(const PrimitiveKey& key) { return cache().find(key); }

CachedEntry insert_primitive(const PrimitiveKey& key, CachedPrimitive entry) {
  return cache().insert(key, std::move(entry));
}

void execute(const dnnl::primitive& primitive, std::span<const ExecArg> args) {
  // The C API takes a plain array of arguments: no hash map per call, as the C++ one would build.
  constexpr std::size_t kMaxArgs = 16;
  RW_ASSERT(args.size() <= kMaxArgs);
  std::array<dnnl_exec_arg_t, kMaxArgs> c_args{};
  std::size_t n = 0;
  auto release = [&] {
    for (std::size_t i = 0; i < n; ++i) dnnl_memory_destroy(c_args[i].memory);
  };
  for (const ExecArg& a : args) {
    dnnl_memory_t mem = nullptr;
    dnnl_status_t st =
        dnnl_memory_create(&mem, &a.desc->data, dnnl_engine().get(), const_cast<void*>(a.data));
    if (st != dnnl_success) {
      release();
      throw dnnl::error(st, "could not create a memory object");
    }
    c_args[n++] = {a.arg, mem};
  }
  dnnl::stream& stream = dnnl_stream();
  dnnl_status_t st =
      dnnl_primitive_execute(primitive.get(), stream.get(), static_cast<int>(n), c_args.data());
  if (st == dnnl_success) st = dnnl_stream_wait(stream.get());
  release();
  if (st != dnnl_success) throw dnnl::error(st, "could not execute a primitive");
}

void execute(const dnnl::primitive& primitive, std::initializer_list<ExecArg> args) {
  execute(primitive, std::span<const ExecArg>(args.begin(), args.size()));
}

PrimitiveCacheStats primitive_cache_stats() { return cache().stats(); }

bool is_reference_impl(const dnnl::primitive_desc_base& pd) {
  return std::string_view(pd.impl_info_str()).starts_with("ref");
}

}  // namespace rw::cpu
