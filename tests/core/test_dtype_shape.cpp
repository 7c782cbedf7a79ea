// DType names, sizes, promotion and parsing; shape helpers; Device::parse.
#include <doctest/doctest.h>

#include <limits>
#include <string>

#include "core/device.h"
#include "core/dtype.h"
#include "core/error.h"
#include "core/shape.h"
#include "test_util.h"

namespace rw {

using namespace rw::test;

namespace {

constexpr DType kAll[] = {DType::f32, DType::f64, DType::bf16, DType::f16,
                          DType::i32, DType::i64, DType::u8,   DType::boolean};

TEST_CASE("dtype names and sizes") {
  CHECK(dtype_name(DType::f32) == "f32");
  CHECK(dtype_name(DType::f64) == "f64");
  CHECK(dtype_name(DType::bf16) == "bf16");
  CHECK(dtype_name(DType::f16) == "f16");
  CHECK(dtype_name(DType::i32) == "i32");
  CHECK(dtype_name(DType::i64) == "i64");
  CHECK(dtype_name(DType::u8) == "u8");
  CHECK(dtype_name(DType::boolean) == "bool");
  CHECK(dtype_size(DType::f32) == 4);
  CHECK(dtype_size(DType::f64) == 8);
  CHECK(dtype_size(DType::bf16) == 2);
  CHECK(dtype_size(DType::f16) == 2);
  CHECK(dtype_size(DType::i32) == 4);
  CHECK(dtype_size(DType::i64) == 8);
  CHECK(dtype_size(DType::u8) == 1);
  CHECK(dtype_size(DType::boolean) == 1);
  CHECK(fmt::format("{}", DType::bf16) == "bf16");
  for (DType t : kAll) CHECK(is_floating(t) != is_integral(t));
  CHECK(is_floating(DType::f16));
  CHECK(is_integral(DType::boolean));
}

TEST_CASE("dtype names round trip and aliases parse") {
  for (DType t : kAll) CHECK(dtype_from_name(dtype_name(t)) == t);
  CHECK(dtype_from_name("float32") == DType::f32);
  CHECK(dtype_from_name("float") == DType::f32);
  CHECK(dtype_from_name("double") == DType::f64);
  CHECK(dtype_from_name("bfloat16") == DType::bf16);
  CHECK(dtype_from_name("half") == DType::f16);
  CHECK(dtype_from_name("int64") == DType::i64);
  CHECK(dtype_from_name("uint8") == DType::u8);
}

TEST_CASE("dtype_from_name rejects unknown names, quoting them") {
  std::string msg = error_message([] { dtype_from_name("f8"); });
  CHECK(msg.find("'f8'") != std::string::npos);
  CHECK(msg.find("unknown dtype") != std::string::npos);
  CHECK_THROWS_AS(dtype_from_name(""), Error);
  CHECK_THROWS_AS(dtype_from_name("F32"), Error);  // names are case-sensitive
}

TEST_CASE("promotion table") {
  // Symmetric, and a dtype promotes with itself to itself.
  for (DType a : kAll) {
    CHECK(promote_types(a, a) == a);
    for (DType b : kAll) CHECK(promote_types(a, b) == promote_types(b, a));
  }
  // Floating beats integral, whatever the width.
  CHECK(promote_types(DType::f16, DType::i64) == DType::f16);
  CHECK(promote_types(DType::bf16, DType::i32) == DType::bf16);
  CHECK(promote_types(DType::f32, DType::i64) == DType::f32);
  CHECK(promote_types(DType::boolean, DType::f64) == DType::f64);
  // Wider beats narrower.
  CHECK(promote_types(DType::f32, DType::f64) == DType::f64);
  CHECK(promote_types(DType::f16, DType::f32) == DType::f32);
  CHECK(promote_types(DType::bf16, DType::f32) == DType::f32);
  CHECK(promote_types(DType::i32, DType::i64) == DType::i64);
  CHECK(promote_types(DType::u8, DType::i32) == DType::i32);
  CHECK(promote_types(DType::boolean, DType::u8) == DType::u8);
  CHECK(promote_types(DType::boolean, DType::i64) == DType::i64);
  // Neither half type holds the other.
  CHECK(promote_types(DType::bf16, DType::f16) == DType::f32);
}

TEST_CASE("dtype_of maps C++ types") {
  CHECK(dtype_of_v<float> == DType::f32);
  CHECK(dtype_of_v<double> == DType::f64);
  CHECK(dtype_of_v<int32_t> == DType::i32);
  CHECK(dtype_of_v<int64_t> == DType::i64);
  CHECK(dtype_of_v<uint8_t> == DType::u8);
  CHECK(dtype_of_v<bool> == DType::boolean);
}

TEST_CASE("shape_numel, including zero extents and overflow") {
  CHECK(shape_numel(Shape{}) == 1);
  CHECK(shape_numel(Shape{2, 3, 4}) == 24);
  CHECK(shape_numel(Shape{2, 0, 4}) == 0);
  const int64_t big = int64_t{1} << 32;
  std::string msg = error_message([&] { shape_numel(Shape{big, big}); });
  CHECK(msg.find("2^63") != std::string::npos);
  CHECK(msg.find("4294967296") != std::string::npos);  // names the shape
  // Zero anywhere wins over a huge product.
  CHECK(shape_numel(Shape{big, big, 0}) == 0);
  CHECK(shape_numel(Shape{std::numeric_limits<int64_t>::max(), 1}) ==
        std::numeric_limits<int64_t>::max());
  std::string neg = error_message([] { shape_numel(Shape{2, -3}); });
  CHECK(neg.find("-3") != std::string::npos);
}

TEST_CASE("contiguous strides and layout check") {
  CHECK(contiguous_strides(Shape{2, 3, 4}) == Strides{12, 4, 1});
  CHECK(contiguous_strides(Shape{}) == Strides{});
  CHECK(contiguous_strides(Shape{3, 0, 2}) == Strides{2, 2, 1});
  CHECK(is_contiguous_layout(Shape{2, 3}, Strides{3, 1}));
  CHECK_FALSE(is_contiguous_layout(Shape{2, 3}, Strides{1, 2}));
  // Size-1 dims may carry any stride.
  CHECK(is_contiguous_layout(Shape{2, 1, 3}, Strides{3, 99, 1}));
  // Broadcast (stride 0) is not dense.
  CHECK_FALSE(is_contiguous_layout(Shape{2, 3}, Strides{0, 1}));
  CHECK(is_contiguous_layout(Shape{}, Strides{}));
}

TEST_CASE("broadcast_shapes") {
  CHECK(broadcast_shapes("add", Shape{2, 1, 4}, Shape{3, 1}) == Shape{2, 3, 4});
  CHECK(broadcast_shapes("add", Shape{}, Shape{5}) == Shape{5});
  CHECK(broadcast_shapes("add", Shape{0, 1}, Shape{1, 7}) == Shape{0, 7});
  CHECK(broadcast_shapes("add", Shape{4}, Shape{}) == Shape{4});
  std::string msg = error_message([] { broadcast_shapes("mul", Shape{2, 3}, Shape{4, 3}); });
  CHECK(msg.find("mul") == 0);
  CHECK(msg.find("[2, 3]") != std::string::npos);
  CHECK(msg.find("[4, 3]") != std::string::npos);
  CHECK_THROWS_AS(broadcast_shapes("where", Shape{0}, Shape{2}), Error);
}

TEST_CASE("normalize_dim and normalize_dims") {
  CHECK(normalize_dim("sum", 0, 3) == 0);
  CHECK(normalize_dim("sum", -1, 3) == 2);
  CHECK(normalize_dim("sum", -3, 3) == 0);
  // Rank 0 accepts 0 and -1, as PyTorch.
  CHECK(normalize_dim("sum", -1, 0) == 0);
  CHECK(normalize_dim("sum", 0, 0) == 0);
  std::string msg = error_message([] { normalize_dim("softmax", 3, 3); });
  CHECK(msg.find("softmax") == 0);
  CHECK(msg.find("dim 3") != std::string::npos);
  CHECK(msg.find("rank 3") != std::string::npos);
  CHECK_THROWS_AS(normalize_dim("softmax", -4, 3), Error);
  CHECK_THROWS_AS(normalize_dim("softmax", 1, 0), Error);

  CHECK(normalize_dims("sum", std::vector<int64_t>{}, 3) == std::vector<int64_t>{0, 1, 2});
  CHECK(normalize_dims("sum", std::vector<int64_t>{-1, 0}, 3) == std::vector<int64_t>{0, 2});
  std::string rep = error_message([] { normalize_dims("mean", std::vector<int64_t>{1, -2}, 3); });
  CHECK(rep.find("mean") == 0);
  CHECK(rep.find("repeat") != std::string::npos);
  CHECK(normalize_dims("sum", std::vector<int64_t>{0}, 0).empty());
}

TEST_CASE("Device parse and str") {
  CHECK(Device::parse("cpu") == Device::cpu());
  CHECK(Device::parse("cuda") == Device::cuda(0));
  CHECK(Device::parse("cuda:3") == Device::cuda(3));
  CHECK(Device::parse("cuda:3").index == 3);
  CHECK(Device::parse("cuda:3").is_cuda());
  CHECK(Device::cpu().str() == "cpu");
  CHECK(Device::cuda(2).str() == "cuda:2");
  CHECK(fmt::format("{}", Device::cuda(1)) == "cuda:1");
  CHECK(Device::parse(Device::cuda(7).str()) == Device::cuda(7));
  for (const char* bad : {"gpu", "cuda:", "cuda:x", "cuda:-1", "cuda:1x", "cuda:16", "CPU", ""}) {
    CAPTURE(bad);
    std::string msg = error_message([&] { Device::parse(bad); });
    CHECK(msg.find(fmt::format("'{}'", bad)) != std::string::npos);
  }
}

}  // namespace
}  // namespace rw
