// Writes a small seed corpus of valid safetensors files for fuzz_safetensors into the directory
// given as the only argument: the fuzzer mutates these rather than starting from nothing.
#include <cstdio>
#include <filesystem>
#include <string>

#include "core/error.h"
#include "core/tensor.h"
#include "nn/atomic_file.h"
#include "nn/safetensors.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s OUTPUT_DIR\n", argv[0]);
    return 2;
  }
  const std::filesystem::path dir = argv[1];
  std::filesystem::create_directories(dir);
  using rw::DType;
  using rw::nn::StateDict;
  auto write = [&](const std::string& name, const StateDict& tensors,
                   const rw::nn::SafetensorsMetadata& metadata) {
    rw::nn::write_file_atomically(dir / (name + ".safetensors"),
                                  rw::nn::serialize_safetensors(tensors, metadata));
  };
  try {
    write("empty", {}, {});
    write("metadata_only", {}, {{"format", "pt"}});
    write("one_f32", {{"a", rw::from_vector<float>({1, 2})}}, {{"format", "pt"}});
    write("every_dtype",
          {{"f32", rw::full({2, 2}, 1.5)},
           {"f64", rw::full({3}, -2, {.dtype = DType::f64})},
           {"bf16", rw::full({2}, 3, {.dtype = DType::bf16})},
           {"f16", rw::full({2}, 4, {.dtype = DType::f16})},
           {"i32", rw::arange(3, {.dtype = DType::i32})},
           {"i64", rw::arange(2)},
           {"u8", rw::full({3}, 7, {.dtype = DType::u8})},
           {"bool", rw::from_vector<bool>({true, false})}},
          {{"k", "v"}});
    write("odd_shapes",
          {{"scalar", rw::scalar_tensor(1)},
           {"zero", rw::empty({0})},
           {"zero_2d", rw::empty({2, 0}, {.dtype = DType::i64})}},
          {});
  } catch (const rw::Error& e) {
    std::fprintf(stderr, "make_seeds: %s\n", e.what());
    return 1;
  }
  return 0;
}
