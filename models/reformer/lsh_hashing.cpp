#include "models/reformer/lsh_hashing.h"

#include <cmath>
#include <utility>

#include "core/ops.h"

namespace rw::reformer {

int64_t default_n_buckets(int64_t length, int64_t chunk_len) {
  RW_CHECK(length >= 0 && chunk_len > 0,
           "default_n_buckets: need length >= 0 and chunk_len > 0, got {} and {}", length,
           chunk_len);
  const double target = 2.0 * static_cast<double>(length) / static_cast<double>(chunk_len);
  if (target <= 2) return 2;
  const auto exponent = static_cast<int64_t>(std::lround(std::log2(target)));
  return int64_t{1} << std::min<int64_t>(exponent, 40);
}

BucketFactors factorise_buckets(int64_t n_buckets) {
  RW_CHECK(n_buckets == 1 || (n_buckets >= 2 && n_buckets % 2 == 0),
           "factorise_buckets: n_buckets must be 1 or even (argmax over [xR; -xR] gives an even "
           "count), got {}",
           n_buckets);
  if (n_buckets <= kFactoriseAbove) return {.first = n_buckets, .second = 1};
  // The even divisor pair closest to sqrt(n_buckets), larger factor first.
  for (auto b2 = static_cast<int64_t>(std::sqrt(static_cast<double>(n_buckets))); b2 >= 2; --b2) {
    if (n_buckets % b2 == 0 && b2 % 2 == 0 && (n_buckets / b2) % 2 == 0) {
      return {.first = n_buckets / b2, .second = b2};
    }
  }
  return {.first = n_buckets, .second = 1};  // no even factorisation (2 x odd): one rotation
}

LSHRotations random_lsh_rotations(int64_t n_heads, int64_t d_head, int64_t n_hashes,
                                  int64_t n_buckets, Generator& generator, DType dtype) {
  RW_CHECK(n_heads > 0 && d_head > 0 && n_hashes > 0,
           "random_lsh_rotations: n_heads, d_head and n_hashes must be positive, got {}, {}, {}",
           n_heads, d_head, n_hashes);
  LSHRotations r;
  r.n_buckets = n_buckets;
  r.n_hashes = n_hashes;
  r.factors = factorise_buckets(n_buckets);
  const TensorOptions opts{.dtype = dtype};
  if (r.factors.first > 1) {
    r.first = randn({n_heads, n_hashes, d_head, r.factors.first / 2}, generator, opts);
  }
  if (r.factors.second > 1) {
    r.second = randn({n_heads, n_hashes, d_head, r.factors.second / 2}, generator, opts);
  }
  return r;
}

LSHRotations lsh_rotations_from(int64_t n_buckets, int64_t n_hashes, Tensor first, Tensor second) {
  RW_CHECK(n_hashes > 0, "lsh_rotations: n_hashes must be positive, got {}", n_hashes);
  LSHRotations r;
  r.n_buckets = n_buckets;
  r.n_hashes = n_hashes;
  r.factors = factorise_buckets(n_buckets);
  auto check = [&](const Tensor& t, int64_t factor, const char* which) {
    if (factor == 1) {
      RW_CHECK(!t.defined(),
               "lsh_rotations: n_buckets {} (factors {} x {}) takes no {} rotation, got shape {}",
               n_buckets, r.factors.first, r.factors.second, which, t.shape());
      return;
    }
    RW_CHECK(t.defined(), "lsh_rotations: n_buckets {} (factors {} x {}) needs a {} rotation",
             n_buckets, r.factors.first, r.factors.second, which);
    RW_CHECK(
        t.dim() == 4 && t.size(1) == n_hashes && t.size(3) == factor / 2 && is_floating(t.dtype()),
        "lsh_rotations: the {} rotation must be floating [n_heads, {}, d_head, {}] for "
        "n_hashes {} and n_buckets {} (factors {} x {}), got {} {}",
        which, n_hashes, factor / 2, n_hashes, n_buckets, r.factors.first, r.factors.second,
        t.dtype(), t.shape());
  };
  check(first, r.factors.first, "first");
  check(second, r.factors.second, "second");
  if (first.defined() && second.defined()) {
    RW_CHECK(first.size(0) == second.size(0) && first.size(1) == second.size(1) &&
                 first.size(2) == second.size(2),
             "lsh_rotations: the rotations disagree on [n_heads, n_hashes, d_head]: {} vs {}",
             first.shape(), second.shape());
  }
  r.first = std::move(first);
  r.second = std::move(second);
  return r;
}

namespace {

// x [B, H, L, d] times R [H, n, d, w] -> [B, H, n, L, w].
Tensor project(const Tensor& x, const Tensor& rotation) {
  return matmul(x.unsqueeze(2), rotation.to(x.dtype()));
}

// argmax([xR; -xR]) over the last dim: x [B, H, L, d], R [H, n, d, w] -> i64 [B, H, n, L].
Tensor angular_bucket(const Tensor& x, const Tensor& rotation) {
  Tensor proj = project(x, rotation);
  return argmax(concat({proj, neg(proj)}, -1), -1);
}

// The first index of the largest of [p; -p] (p of length w), NaN winning as in rw::argmax: the
// result of argmax over the concatenation, without building it. Branch-free in the common case:
// the largest of [p; -p] is max(p) (first half, ties included) or -min(p) (second half), found
// at the first p[i] equal to it; a row with a NaN takes the elementwise scan.
template <typename T>
int64_t first_argmax_pm(const T* p, int64_t w) {
  T hi = p[0], lo = p[0];
  bool nan = false;
  for (int64_t i = 0; i < w; ++i) {
    hi = p[i] > hi ? p[i] : hi;
    lo = p[i] < lo ? p[i] : lo;
    nan |= p[i] != p[i];
  }
  if (!nan) {
    const bool first_half = hi >= -lo;
    const T target = first_half ? hi : lo;
    int64_t i = 0;
    while (p[i] != target) ++i;
    return first_half ? i : w + i;
  }
  auto better = [](T v, T best) {
    if (std::isnan(best)) return false;
    if (std::isnan(v)) return true;
    return v > best;
  };
  int64_t best_i = 0;
  T best = p[0];
  for (int64_t i = 1; i < w; ++i) {
    if (better(p[i], best)) best = p[i], best_i = i;
  }
  for (int64_t i = 0; i < w; ++i) {
    if (better(-p[i], best)) best = -p[i], best_i = w + i;
  }
  return best_i;
}

// The CPU hashing of f32/f64 x: the projections by rw::matmul (as the op path, so the same
// values), then one pass that takes both argmaxes, combines the factors and adds the round
// offsets, instead of concat, neg, argmax, mul and two adds over [B, H, n, L, 2w] tensors.
template <typename T>
Tensor hash_cpu(const Tensor& x, const LSHRotations& r) {
  const int64_t B = x.size(0), H = x.size(1), L = x.size(2), n = r.n_hashes;
  const Tensor p1 = project(x, r.first).contiguous();
  const Tensor p2 = r.second.defined() ? project(x, r.second).contiguous() : Tensor();
  const int64_t w1 = r.first.size(3), w2 = p2.defined() ? r.second.size(3) : 0;
  const int64_t b1 = r.factors.first, nb = r.n_buckets, rows = B * H * n * L;
  Tensor out = empty({B, H, n, L}, {.dtype = DType::i64});
  const T* a = p1.data<T>();
  const T* b = p2.defined() ? p2.data<T>() : nullptr;
  int64_t* o = out.data<int64_t>();
#pragma omp parallel for schedule(static) if (rows >= 4096)
  for (int64_t i = 0; i < rows; ++i) {
    int64_t bucket = first_argmax_pm(a + i * w1, w1);
    if (b != nullptr) bucket += b1 * first_argmax_pm(b + i * w2, w2);
    o[i] = bucket + (i / L) % n * nb;
  }
  return out;
}

}  // namespace

Tensor lsh_hash(const Tensor& x, const LSHRotations& rotations) {
  RW_CHECK(x.defined() && x.dim() == 4 && is_floating(x.dtype()),
           "lsh_hash: x must be floating [batch, heads, length, d_head], got {}",
           x.defined() ? fmt::format("{} {}", x.dtype(), x.shape()) : std::string("undefined"));
  const int64_t B = x.size(0), H = x.size(1), L = x.size(2), d = x.size(3);
  const int64_t n = rotations.n_hashes;
  for (const Tensor* r : {&rotations.first, &rotations.second}) {
    if (!r->defined()) continue;
    RW_CHECK(r->dim() == 4 && r->size(0) == H && r->size(1) == n && r->size(2) == d,
             "lsh_hash: rotations must be [n_heads, n_hashes, d_head, *] = [{}, {}, {}, *] for x "
             "of shape {}, got {}",
             H, n, d, x.shape(), r->shape());
    RW_CHECK(r->device() == x.device(), "lsh_hash: rotations are on {} but x is on {}", r->device(),
             x.device());
  }
  NoGradGuard no_grad;
  Tensor xd = x.detach();
  if (rotations.first.defined() && xd.device().is_cpu()) {
    if (xd.dtype() == DType::f32) return hash_cpu<float>(xd, rotations);
    if (xd.dtype() == DType::f64) return hash_cpu<double>(xd, rotations);
  }
  Tensor buckets;
  if (!rotations.first.defined()) {
    buckets = zeros({B, H, n, L}, {.dtype = DType::i64, .device = x.device()});
  } else {
    buckets = angular_bucket(xd, rotations.first);
    if (rotations.second.defined()) {
      buckets = add(buckets, mul(angular_bucket(xd, rotations.second), rotations.factors.first));
    }
  }
  Tensor offsets = mul(arange(n, {.dtype = DType::i64, .device = x.device()}), rotations.n_buckets);
  return add(buckets, offsets.reshape({n, 1}));
}

}  // namespace rw::reformer
