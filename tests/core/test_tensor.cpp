// Tensor handles: factories, element access, views that alias storage, copies, dtype conversion,
// printing.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "core/half.h"
#include "core/ops.h"
#include "core/tensor.h"
#include "test_util.h"

namespace rw {

using namespace rw::test;

namespace {

// Bits of a float, to compare NaN payload-free values and signed zeros exactly.
uint32_t bits_of(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

// --- factories and element access ----------------------------------------------------------

TEST_CASE("factories give the asked shape, dtype and values") {
  Tensor z = zeros({2, 3});
  CHECK(z.shape() == Shape{2, 3});
  CHECK(z.dtype() == DType::f32);
  CHECK(z.device() == Device::cpu());
  CHECK(z.numel() == 6);
  CHECK(z.nbytes() == 24);
  CHECK(z.is_contiguous());
  CHECK(z.strides() == Strides{3, 1});
  CHECK(vals(z) == std::vector<float>(6, 0.0f));
  CHECK(ones({4}, {.dtype = DType::f64}).to_vector<double>() == std::vector<double>(4, 1.0));
  CHECK(full({2}, 2.5).to_vector<float>() == std::vector<float>{2.5f, 2.5f});
  CHECK(full({3}, 7, {.dtype = DType::i32}).to_vector<int32_t>() == std::vector<int32_t>{7, 7, 7});
  CHECK(full({2}, 1, {.dtype = DType::boolean}).to_vector<bool>() == std::vector<bool>{true, true});

  Tensor s = scalar_tensor(3.5);
  CHECK(s.dim() == 0);
  CHECK(s.numel() == 1);
  CHECK(s.item() == 3.5);
  CHECK(s.item<float>() == 3.5f);

  Tensor e = empty({0, 4});
  CHECK(e.numel() == 0);
  CHECK(e.to_vector<float>().empty());

  Tensor like = full_like(ones({2, 2}, {.dtype = DType::f64}), -1);
  CHECK(like.dtype() == DType::f64);
  CHECK(like.to_vector<double>() == std::vector<double>(4, -1.0));
  CHECK(zeros_like(like).to_vector<double>() == std::vector<double>(4, 0.0));
  CHECK(ones_like(like).shape() == Shape{2, 2});
  CHECK(empty_like(like).dtype() == DType::f64);
}

TEST_CASE("arange") {
  Tensor a = arange(5);
  CHECK(a.dtype() == DType::i64);
  CHECK(a.to_vector<int64_t>() == std::vector<int64_t>{0, 1, 2, 3, 4});
  CHECK(arange(1.0, 2.0, 0.25, {.dtype = DType::f32}).to_vector<float>() ==
        std::vector<float>{1.0f, 1.25f, 1.5f, 1.75f});
  CHECK(arange(5.0, 0.0, -2.0, {.dtype = DType::f64}).to_vector<double>() ==
        std::vector<double>{5, 3, 1});
  CHECK(arange(3.0, 3.0, 1.0).numel() == 0);
  CHECK(contains(error_message([] { arange(0.0, 1.0, 0.0); }), "arange"));
}

TEST_CASE("from_vector, to_vector and item") {
  Tensor t = from_vector<float>({1, 2, 3, 4, 5, 6}, Shape{2, 3});
  CHECK(t.shape() == Shape{2, 3});
  CHECK(t.dtype() == DType::f32);
  CHECK(vals(t) == std::vector<float>{1, 2, 3, 4, 5, 6});
  // to_vector converts the dtype.
  CHECK(t.to_vector<int64_t>() == std::vector<int64_t>{1, 2, 3, 4, 5, 6});
  CHECK(t.to_vector<double>() == std::vector<double>{1, 2, 3, 4, 5, 6});

  CHECK(from_vector<double>({1.5}).dtype() == DType::f64);
  CHECK(from_vector<int32_t>({-3, 4}).to_vector<int32_t>() == std::vector<int32_t>{-3, 4});
  CHECK(from_vector<int64_t>({int64_t{1} << 40}).item<int64_t>() == (int64_t{1} << 40));
  CHECK(from_vector<uint8_t>({0, 255}).to_vector<uint8_t>() == std::vector<uint8_t>{0, 255});
  Tensor b = from_vector<bool>({true, false, true});
  CHECK(b.dtype() == DType::boolean);
  CHECK(b.to_vector<bool>() == std::vector<bool>{true, false, true});
  CHECK(b.to_vector<int32_t>() == std::vector<int32_t>{1, 0, 1});
  CHECK(from_vector<float>({}).shape() == Shape{0});

  // A shape of one element, and item on it.
  CHECK(from_vector<float>({4.0f}, Shape{1, 1}).item<float>() == 4.0f);
  CHECK(from_vector<float>({4.0f}, Shape{}).dim() == 0);

  std::string fill = error_message([] { from_vector<float>({1, 2, 3}, Shape{2, 2}); });
  CHECK(contains(fill, "from_vector"));
  CHECK(contains(fill, "[2, 2]"));
  std::string item = error_message([&] { t.item<float>(); });
  CHECK(contains(item, "item"));
  CHECK(contains(item, "[2, 3]"));
  std::string data = error_message([&] { t.data<double>(); });
  CHECK(contains(data, "f32"));
  CHECK(t.data<float>()[4] == 5.0f);
}

TEST_CASE("from_blob_copy copies") {
  std::vector<int32_t> host{1, 2, 3, 4};
  Tensor t = from_blob_copy(host.data(), {2, 2}, DType::i32);
  host[0] = 100;
  CHECK(t.to_vector<int32_t>() == std::vector<int32_t>{1, 2, 3, 4});
}

TEST_CASE("size, stride and their dim errors") {
  Tensor t = zeros({2, 3, 4});
  CHECK(t.size(0) == 2);
  CHECK(t.size(-1) == 4);
  CHECK(t.stride(0) == 12);
  CHECK(t.stride(-2) == 4);
  std::string msg = error_message([&] { t.size(3); });
  CHECK(contains(msg, "size"));
  CHECK(contains(msg, "dim 3"));
  CHECK_THROWS_AS(t.stride(-4), Error);
  // A 0-dim tensor has no dims to ask about.
  Tensor s = scalar_tensor(1);
  CHECK_THROWS_AS(s.size(0), Error);
  CHECK_THROWS_AS(s.stride(-1), Error);
}

TEST_CASE("undefined tensors") {
  Tensor u;
  CHECK_FALSE(u.defined());
  CHECK(contains(error_message([&] { (void)u.shape(); }), "undefined"));
  CHECK(u.str() == "tensor(undefined)");
}

// --- views ---------------------------------------------------------------------------------

TEST_CASE("views share storage and writes through a view reach the base") {
  Tensor base = iota({3, 4});
  Tensor row = base.select(0, 1);  // [4, 5, 6, 7]
  CHECK(row.storage() == base.storage());
  CHECK(row.offset() == 4);
  fill_(row, -1);
  CHECK(vals(base) == std::vector<float>{0, 1, 2, 3, -1, -1, -1, -1, 8, 9, 10, 11});

  Tensor col = base.narrow(1, 2, 1);  // column 2, non-contiguous
  CHECK(col.storage() == base.storage());
  CHECK_FALSE(col.is_contiguous());
  copy_(col, from_vector<float>({100, 200, 300}, Shape{3, 1}));
  CHECK(vals(base) == std::vector<float>{0, 1, 100, 3, -1, -1, 200, -1, 8, 9, 300, 11});

  Tensor tr = base.transpose(0, 1);
  CHECK(tr.storage() == base.storage());
  fill_(tr.select(0, 0), 7);  // column 0 of base
  CHECK(vals(base.select(1, 0)) == std::vector<float>{7, 7, 7});

  // A write into the base is seen by an earlier view, too.
  Tensor v = base.view({12});
  fill_(base, 0);
  CHECK(vals(v) == std::vector<float>(12, 0.0f));
}

TEST_CASE("in-place writes bump the storage version seen by every view") {
  Tensor base = zeros({4});
  Tensor view = base.narrow(0, 1, 2);
  uint64_t v0 = base.storage()->version();
  fill_(view, 1);
  CHECK(base.storage()->version() > v0);
  CHECK(view.storage()->version() == base.storage()->version());
}

TEST_CASE("view and reshape") {
  Tensor t = iota({2, 3, 4});
  Tensor v = t.view({6, 4});
  CHECK(v.shape() == Shape{6, 4});
  CHECK(v.storage() == t.storage());
  CHECK(t.view({-1}).shape() == Shape{24});
  CHECK(t.view({4, -1}).shape() == Shape{4, 6});
  CHECK(t.reshape({2, 12}).storage() == t.storage());
  CHECK(t.view({1, 24, 1}).shape() == Shape{1, 24, 1});

  // A transposed tensor can still be viewed where the merged dims stay contiguous...
  Tensor tr = t.transpose(0, 1);  // [3, 2, 4]
  Tensor split = tr.view({3, 2, 2, 2});
  CHECK(split.storage() == t.storage());
  CHECK(vals(split) == vals(tr));
  // ... but not merged across the transposition: view() refuses, reshape() copies.
  std::string msg = error_message([&] { tr.view({6, 4}); });
  CHECK(contains(msg, "view"));
  CHECK(contains(msg, "[3, 2, 4]"));
  CHECK(contains(msg, "[6, 4]"));
  CHECK(contains(msg, "reshape"));
  Tensor r = tr.reshape({6, 4});
  CHECK(r.storage() != t.storage());
  CHECK(r.is_contiguous());
  CHECK(vals(r) == vals(tr));
  CHECK(vals(r).at(4) == 12.0f);  // row 1 of the [3, 2, 4] view starts at t[1][0][0]

  CHECK(contains(error_message([&] { t.view({5, 5}); }), "25"));
  CHECK(contains(error_message([&] { t.view({-1, -1}); }), "more than one -1"));
  CHECK(contains(error_message([&] { t.reshape({7, -1}); }), "infer"));

  // Zero-size and 0-dim tensors reshape freely.
  CHECK(zeros({0, 3}).reshape({3, 0, 5}).shape() == Shape{3, 0, 5});
  CHECK(scalar_tensor(2).reshape({1, 1}).shape() == Shape{1, 1});
  CHECK(ones({1, 1}).reshape({}).dim() == 0);
}

TEST_CASE("transpose and permute") {
  Tensor t = iota({2, 3});
  Tensor tr = t.transpose(0, 1);
  CHECK(tr.shape() == Shape{3, 2});
  CHECK(tr.strides() == Strides{1, 3});
  CHECK(vals(tr) == std::vector<float>{0, 3, 1, 4, 2, 5});
  CHECK(vals(t.mT()) == vals(tr));
  CHECK(vals(t.transpose(-1, -2)) == vals(tr));
  CHECK(t.transpose(1, 1).strides() == t.strides());
  CHECK(scalar_tensor(1).transpose(0, -1).dim() == 0);  // as PyTorch
  CHECK_THROWS_AS(scalar_tensor(1).transpose(0, 1), Error);

  Tensor u = iota({2, 3, 4});
  Tensor p = u.permute({2, 0, 1});
  CHECK(p.shape() == Shape{4, 2, 3});
  CHECK(p.strides() == Strides{1, 12, 4});
  CHECK(p.storage() == u.storage());
  // p[i][j][k] == u[j][k][i]
  std::vector<float> pv = vals(p);
  CHECK(pv[1 * 6 + 1 * 3 + 2] == 1 * 12 + 2 * 4 + 1);
  CHECK(vals(p.permute({1, 2, 0})) == vals(u));  // the inverse permutation

  CHECK(contains(error_message([&] { u.permute({0, 1}); }), "permute"));
  CHECK(contains(error_message([&] { u.permute({0, 1, 1}); }), "repeats"));
  CHECK(contains(error_message([&] { u.transpose(0, 3); }), "transpose"));
}

TEST_CASE("narrow, slice with step, select") {
  Tensor t = iota({10});
  CHECK(vals(t.narrow(0, 2, 3)) == std::vector<float>{2, 3, 4});
  CHECK(vals(t.narrow(0, -3, 2)) == std::vector<float>{7, 8});
  CHECK(t.narrow(0, 10, 0).numel() == 0);
  std::string msg = error_message([&] { t.narrow(0, 8, 3); });
  CHECK(contains(msg, "narrow"));
  CHECK(contains(msg, "[8, 11)"));
  CHECK(contains(msg, "10"));

  Tensor s = t.slice(0, 1, 8, 3);
  CHECK(s.shape() == Shape{3});
  CHECK(s.strides() == Strides{3});
  CHECK(s.offset() == 1);
  CHECK(vals(s) == std::vector<float>{1, 4, 7});
  CHECK(vals(t.slice(0, -4, -1)) == std::vector<float>{6, 7, 8});
  CHECK(vals(t.slice(0, 7, 100)) == std::vector<float>{7, 8, 9});  // end clamps
  CHECK(t.slice(0, 5, 2).numel() == 0);                            // empty, not an error
  CHECK(vals(t.slice(0, 0, 10, 4)) == std::vector<float>{0, 4, 8});
  CHECK(contains(error_message([&] { t.slice(0, 0, 10, 0); }), "step"));

  Tensor m = iota({3, 4});
  CHECK(vals(m.slice(1, 0, 4, 2)) == std::vector<float>{0, 2, 4, 6, 8, 10});
  CHECK(vals(m.slice(0, 1, 3).slice(1, 1, 4, 2)) == std::vector<float>{5, 7, 9, 11});

  Tensor row = m.select(0, -1);
  CHECK(row.shape() == Shape{4});
  CHECK(vals(row) == std::vector<float>{8, 9, 10, 11});
  Tensor col = m.select(1, 2);
  CHECK(col.shape() == Shape{3});
  CHECK(vals(col) == std::vector<float>{2, 6, 10});
  CHECK(m.select(0, 0).select(0, 3).item<float>() == 3.0f);
  std::string sel = error_message([&] { m.select(1, 4); });
  CHECK(contains(sel, "select"));
  CHECK(contains(sel, "index 4"));

  // Rank-0 tensors have no dim to cut.
  Tensor s0 = scalar_tensor(1);
  CHECK_THROWS_AS(s0.narrow(0, 0, 1), Error);
  CHECK_THROWS_AS(s0.select(0, 0), Error);
  CHECK_THROWS_AS(s0.slice(0, 0, 1), Error);
}

TEST_CASE("expand gives stride-0 broadcast views") {
  Tensor t = from_vector<float>({1, 2, 3}, Shape{3, 1});
  Tensor e = t.expand({2, 3, 4});
  CHECK(e.shape() == Shape{2, 3, 4});
  CHECK(e.strides() == Strides{0, 1, 0});
  CHECK(e.storage() == t.storage());
  std::vector<float> ev = vals(e);
  CHECK(ev.size() == 24);
  CHECK(ev[0] == 1);
  CHECK(ev[5] == 2);
  CHECK(ev[12 + 11] == 3);
  CHECK(t.expand({-1, 2}).shape() == Shape{3, 2});
  CHECK(t.broadcast_to({3, 5}).strides() == Strides{1, 0});
  CHECK(t.expand({3, 1}).is_same(t));
  CHECK(zeros({1}).expand({0}).numel() == 0);
  CHECK(scalar_tensor(5).expand({2, 2}).to_vector<float>() == std::vector<float>(4, 5.0f));

  std::string msg = error_message([&] { t.expand({2, 2}); });
  CHECK(contains(msg, "expand"));
  CHECK(contains(msg, "[3, 1]"));
  CHECK(contains(msg, "[2, 2]"));
  CHECK_THROWS_AS(t.expand({3}), Error);
  CHECK(contains(error_message([&] { t.expand({3, -2}); }), "expand"));
  CHECK_THROWS_AS(t.expand({-1, 3, 1}), Error);
}

TEST_CASE("squeeze, unsqueeze, flatten") {
  Tensor t = iota({1, 3, 1, 2});
  CHECK(t.squeeze().shape() == Shape{3, 2});
  CHECK(t.squeeze(0).shape() == Shape{3, 1, 2});
  CHECK(t.squeeze(-2).shape() == Shape{1, 3, 2});
  CHECK(t.squeeze(1).shape() == t.shape());  // not size 1: unchanged
  CHECK(t.squeeze().storage() == t.storage());
  CHECK(ones({1, 1}).squeeze().dim() == 0);
  CHECK(scalar_tensor(1).squeeze(0).dim() == 0);

  Tensor v = iota({3});
  CHECK(v.unsqueeze(0).shape() == Shape{1, 3});
  CHECK(v.unsqueeze(1).shape() == Shape{3, 1});
  CHECK(v.unsqueeze(-1).shape() == Shape{3, 1});
  CHECK(scalar_tensor(1).unsqueeze(0).shape() == Shape{1});
  CHECK_THROWS_AS(v.unsqueeze(2), Error);
  // unsqueeze of a non-contiguous tensor is still a view.
  Tensor tr = iota({2, 3}).transpose(0, 1);
  CHECK(tr.unsqueeze(1).storage() == tr.storage());
  CHECK(vals(tr.unsqueeze(1)) == vals(tr));

  Tensor u = iota({2, 3, 4});
  CHECK(u.flatten().shape() == Shape{24});
  CHECK(u.flatten(1).shape() == Shape{2, 12});
  CHECK(u.flatten(0, 1).shape() == Shape{6, 4});
  CHECK(u.flatten(-2, -1).shape() == Shape{2, 12});
  CHECK(scalar_tensor(3).flatten().shape() == Shape{1});
  CHECK(vals(u.transpose(0, 2).flatten()) == vals(u.transpose(0, 2)));
  CHECK(contains(error_message([&] { u.flatten(2, 1); }), "flatten"));
}

// --- copies --------------------------------------------------------------------------------

TEST_CASE("contiguous returns the same tensor when already contiguous") {
  Tensor t = iota({3, 4});
  CHECK(t.contiguous().is_same(t));
  CHECK(t.narrow(0, 1, 2).contiguous().storage() == t.storage());  // rows: still dense
  Tensor tr = t.transpose(0, 1);
  Tensor c = tr.contiguous();
  CHECK(c.storage() != t.storage());
  CHECK(c.is_contiguous());
  CHECK(c.strides() == Strides{3, 1});
  CHECK(vals(c) == vals(tr));
  // A broadcast view becomes a real, dense tensor.
  Tensor e = from_vector<float>({1, 2}).expand({3, 2}).contiguous();
  CHECK(e.strides() == Strides{2, 1});
  CHECK(vals(e) == std::vector<float>{1, 2, 1, 2, 1, 2});
}

TEST_CASE("clone and detach") {
  Tensor t = iota({4});
  Tensor c = t.clone();
  CHECK(c.storage() != t.storage());
  fill_(c, 0);
  CHECK(vals(t) == std::vector<float>{0, 1, 2, 3});
  // clone of a strided view is dense.
  CHECK(t.slice(0, 0, 4, 2).clone().strides() == Strides{1});

  Tensor d = t.detach();
  CHECK(d.storage() == t.storage());
  CHECK_FALSE(d.is_same(t));
  CHECK_FALSE(d.requires_grad());
}

TEST_CASE("to(dtype) round trips and is the identity for the same dtype") {
  Tensor t = from_vector<float>({-2.5f, 0.0f, 1.0f, 3.75f});
  CHECK(t.to(DType::f32).is_same(t));
  CHECK(t.to(Device::cpu()).is_same(t));
  CHECK(t.to(DType::f64).to_vector<double>() == std::vector<double>{-2.5, 0.0, 1.0, 3.75});
  CHECK(t.to(DType::f64).to(DType::f32).to_vector<float>() == vals(t));
  // Exactly representable values survive the half types.
  CHECK(vals(t.to(DType::bf16).to(DType::f32)) == vals(t));
  CHECK(vals(t.to(DType::f16).to(DType::f32)) == vals(t));
  // Float to integer truncates toward zero, as C++ and PyTorch.
  CHECK(t.to(DType::i32).to_vector<int32_t>() == std::vector<int32_t>{-2, 0, 1, 3});
  CHECK(t.to(DType::boolean).to_vector<bool>() == std::vector<bool>{true, false, true, true});
  CHECK(from_vector<bool>({true, false}).to(DType::f32).to_vector<float>() ==
        std::vector<float>{1, 0});
  // Strided sources convert too.
  CHECK(vals(iota({2, 3}).transpose(0, 1).to(DType::f64)) == std::vector<float>{0, 3, 1, 4, 2, 5});
}

TEST_CASE("f32 -> bf16 rounds to nearest even") {
  const float ulp = std::ldexp(1.0f, -7);  // bf16 spacing in [1, 2)
  std::vector<float> in{
      1.0f + ulp / 2,                          // tie, 1.0 is even -> 1.0
      1.0f + 3 * ulp / 2,                      // tie, 1+ulp is odd -> 1+2ulp
      1.0f + ulp / 2 + std::ldexp(1.0f, -20),  // just above the tie -> 1+ulp
      1.0f + ulp / 2 - std::ldexp(1.0f, -20),  // just below the tie -> 1.0
      -(1.0f + 3 * ulp / 2),                   // symmetric for negatives
      3.14159265f,                             // pi -> 3.140625
      std::numeric_limits<float>::infinity(),  // inf stays inf
      -0.0f,                                   // signed zero kept
  };
  std::vector<float> want{1.0f,
                          1.0f + 2 * ulp,
                          1.0f + ulp,
                          1.0f,
                          -(1.0f + 2 * ulp),
                          3.140625f,
                          std::numeric_limits<float>::infinity(),
                          -0.0f};
  std::vector<float> got = vals(from_vector<float>(in).to(DType::bf16).to(DType::f32));
  REQUIRE(got.size() == want.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    CAPTURE(i);
    CHECK(bits_of(got[i]) == bits_of(want[i]));
  }
  // The largest finite f32 rounds up past bf16's largest finite value to inf.
  CHECK(std::isinf(from_vector<float>({std::numeric_limits<float>::max()})
                       .to(DType::bf16)
                       .to(DType::f32)
                       .item<float>()));
  float nan = from_vector<float>({std::nanf("")}).to(DType::bf16).to(DType::f32).item<float>();
  CHECK(std::isnan(nan));
  // The storage type matches: bits of 1.0 in bf16 are 0x3f80.
  Tensor one = from_vector<float>({1.0f}).to(DType::bf16);
  CHECK(static_cast<const bf16*>(one.data_ptr())->bits == 0x3f80);
}

TEST_CASE("f32 -> f16 known values, subnormals, inf and NaN") {
  const float sub = std::ldexp(1.0f, -24);  // smallest f16 subnormal
  const float inf = std::numeric_limits<float>::infinity();
  struct Case {
    float in;
    float out;
    uint16_t bits;
  };
  const Case cases[] = {
      {1.0f, 1.0f, 0x3c00},
      {-2.0f, -2.0f, 0xc000},
      {0.5f, 0.5f, 0x3800},
      {1.0f / 3.0f, 0.333251953125f, 0x3555},
      {65504.0f, 65504.0f, 0x7bff},                            // largest finite
      {65519.0f, 65504.0f, 0x7bff},                            // below the tie: stays finite
      {65520.0f, inf, 0x7c00},                                 // the tie rounds to even: inf
      {1e6f, inf, 0x7c00},                                     // overflow
      {-inf, -inf, 0xfc00},                                    //
      {std::ldexp(1.0f, -14), std::ldexp(1.0f, -14), 0x0400},  // smallest normal
      {sub, sub, 0x0001},                                      // smallest subnormal
      {3 * sub, 3 * sub, 0x0003},                              //
      {sub / 2, 0.0f, 0x0000},                                 // tie: rounds to even 0
      {3 * sub / 2, 2 * sub, 0x0002},                          // tie: rounds to even 2
      {sub * 0.51f, sub, 0x0001},                              // above the tie
      {-sub, -sub, 0x8001},                                    //
      {1023 * sub, 1023 * sub, 0x03ff},                        // largest subnormal
      {std::ldexp(1.0f, -30), 0.0f, 0x0000},                   // underflow
      {-0.0f, -0.0f, 0x8000},
      {1.0f + std::ldexp(1.0f, -11), 1.0f, 0x3c00},  // tie at 1: even
      {1.0f + 3 * std::ldexp(1.0f, -11), 1.0f + std::ldexp(1.0f, -9), 0x3c02},
  };
  std::vector<float> in;
  for (const Case& c : cases) in.push_back(c.in);
  Tensor h = from_vector<float>(in).to(DType::f16);
  CHECK(h.dtype() == DType::f16);
  CHECK(h.nbytes() == 2 * in.size());
  const auto* hb = static_cast<const f16*>(h.data_ptr());
  std::vector<float> back = vals(h.to(DType::f32));
  for (std::size_t i = 0; i < in.size(); ++i) {
    CAPTURE(i);
    CAPTURE(cases[i].in);
    CHECK(hb[i].bits == cases[i].bits);
    CHECK(bits_of(back[i]) == bits_of(cases[i].out));
  }
  Tensor nan = from_vector<float>({std::nanf(""), -std::nanf("")}).to(DType::f16);
  const auto* nb = static_cast<const f16*>(nan.data_ptr());
  CHECK((nb[0].bits & 0x7c00) == 0x7c00);
  CHECK((nb[0].bits & 0x03ff) != 0);
  for (float v : vals(nan.to(DType::f32))) CHECK(std::isnan(v));
  // f16 -> f64 is exact for subnormals.
  CHECK(from_vector<float>({sub}).to(DType::f16).to(DType::f64).item<double>() ==
        std::ldexp(1.0, -24));
}

// --- printing ------------------------------------------------------------------------------

TEST_CASE("str shows values, shape and dtype") {
  std::string s = from_vector<float>({1.5f, -2, 3, 4}, Shape{2, 2}).str();
  CHECK(contains(s, "tensor("));
  CHECK(contains(s, "[[1.5, -2],\n [3, 4]]"));
  CHECK(contains(s, "shape=[2, 2]"));
  CHECK(contains(s, "dtype=f32"));
  CHECK(contains(s, "device=cpu"));
  CHECK(fmt::format("{}", from_vector<float>({1.5f})) == from_vector<float>({1.5f}).str());

  std::string i = arange(3).str();
  CHECK(contains(i, "[0, 1, 2]"));
  CHECK(contains(i, "dtype=i64"));
  CHECK(contains(scalar_tensor(2.25).str(), "tensor(2.25, shape=[]"));
  CHECK(contains(zeros({0}).str(), "[]"));

  // Long dims are elided in the middle.
  std::string longer = arange(100).str();
  CHECK(contains(longer, "[0, 1, 2, ..., 97, 98, 99]"));
  CHECK_FALSE(contains(longer, "50"));
  // Strided views print their logical order.
  CHECK(contains(iota({2, 2}).transpose(0, 1).str(), "[[0, 2],\n [1, 3]]"));
  CHECK(contains(ones({1}, {.requires_grad = true}).str(), "requires_grad"));
}

TEST_CASE("empty_strided") {
  Tensor t = empty_strided({2, 3}, {1, 2});
  CHECK(t.strides() == Strides{1, 2});
  CHECK_FALSE(t.is_contiguous());
  CHECK(t.storage()->nbytes() == 6 * sizeof(float));
  Tensor b = empty_strided({4, 5}, {0, 1});
  CHECK(b.storage()->nbytes() == 5 * sizeof(float));
  CHECK(contains(error_message([] { empty_strided({2}, {1, 1}); }), "empty_strided"));
  CHECK(contains(error_message([] { empty({2, -1}); }), "-1"));
}

}  // namespace
}  // namespace rw
