// Checkpoints (nn/checkpoint.h): a round trip of model, optimizer-like state, step, RNG state and
// config through one safetensors file; the file's layout as other safetensors tools see it; and
// errors for missing files, plain safetensors files and each kind of bad metadata.
#include <doctest/doctest.h>

#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <limits>
#include <string>
#include <vector>

#include "nn/checkpoint.h"
#include "nn/nn_test_util.h"
#include "nn/safetensors.h"
#include "test_util.h"

namespace rw::nn {

using namespace rw::test;
namespace fs = std::filesystem;

namespace {

std::vector<uint8_t> raw_bytes(const Tensor& t) {
  Tensor c = t.contiguous();
  std::vector<uint8_t> out(c.nbytes());
  if (!out.empty()) std::memcpy(out.data(), c.data_ptr(), out.size());
  return out;
}

void check_same(const StateDict& got, const StateDict& expected) {
  REQUIRE(got.size() == expected.size());
  for (const auto& [key, want] : expected) {
    const std::string& name = key;  // INFO cannot capture a structured binding in clang 14
    INFO("tensor ", name);
    REQUIRE(got.count(name) == 1);
    CHECK(got.at(name).dtype() == want.dtype());
    CHECK(got.at(name).shape() == want.shape());
    CHECK(raw_bytes(got.at(name)) == raw_bytes(want));
  }
}

// What an Adam-like optimizer keeps: a step counter and moment estimates per parameter.
Checkpoint example_checkpoint() {
  Checkpoint c;
  c.model = {{"embed.weight", iota({4, 3})},
             {"blocks.0.ln.bias", f32({0.5f, -0.25f, 1e-7f}, {3})},
             {"head.weight", iota({3, 4}).transpose(0, 1).to(DType::bf16)}};
  c.optimizer = {{"step", scalar_tensor(1234, {.dtype = DType::i64})},
                 {"exp_avg.embed.weight", full({4, 3}, 0.125)},
                 {"exp_avg_sq.embed.weight", full({4, 3}, 1e-30, {.dtype = DType::f64})},
                 {"found_inf", from_vector<bool>({false})}};
  c.step = 1234;
  c.rng = {.seed = std::numeric_limits<uint64_t>::max(), .stream = 7, .counter = 99};
  c.config = {{"d_model", "64"}, {"lr", "0.001"}, {"name", "tiny reformer"}, {"empty", ""}};
  return c;
}

}  // namespace

TEST_CASE("checkpoint: model, optimizer state, step, RNG and config round-trip exactly") {
  TempDir dir("checkpoint");
  const Checkpoint saved = example_checkpoint();
  save_checkpoint(dir / "ckpt.safetensors", saved);
  Checkpoint loaded = load_checkpoint(dir / "ckpt.safetensors");
  check_same(loaded.model, saved.model);
  check_same(loaded.optimizer, saved.optimizer);
  CHECK(loaded.step == 1234);
  CHECK(loaded.rng == saved.rng);
  CHECK(loaded.config == saved.config);

  // Saving again over it replaces it (atomically) with the new state.
  Checkpoint later = saved;
  later.step = 1235;
  later.rng.counter = 100;
  later.model.erase("head.weight");
  save_checkpoint(dir / "ckpt.safetensors", later);
  Checkpoint reloaded = load_checkpoint(dir / "ckpt.safetensors");
  CHECK(reloaded.step == 1235);
  CHECK(reloaded.rng.counter == 100);
  check_same(reloaded.model, later.model);
}

TEST_CASE("checkpoint: the file is plain safetensors with prefixed names and string metadata") {
  TempDir dir("checkpoint");
  save_checkpoint(dir / "ckpt.safetensors", example_checkpoint());
  SafetensorsContents file = read_safetensors(dir / "ckpt.safetensors");
  CHECK(file.tensors.count("model.embed.weight") == 1);
  CHECK(file.tensors.count("model.head.weight") == 1);
  CHECK(file.tensors.count("optim.step") == 1);
  CHECK(file.tensors.count("optim.exp_avg_sq.embed.weight") == 1);
  CHECK(file.tensors.size() == 7);
  const SafetensorsMetadata expected = {
      {"format", "rewind-checkpoint-1"},
      {"step", "1234"},
      {"rng.seed", "18446744073709551615"},
      {"rng.stream", "7"},
      {"rng.counter", "99"},
      {"config.d_model", "64"},
      {"config.lr", "0.001"},
      {"config.name", "tiny reformer"},
      {"config.empty", ""},
  };
  CHECK(file.metadata == expected);
}

TEST_CASE("checkpoint: missing files and plain safetensors files are errors naming the file") {
  TempDir dir("checkpoint");
  const fs::path missing = dir / "missing.safetensors";
  std::string msg = error_message([&] { load_checkpoint(missing); });
  CHECK(contains(msg, "'" + missing.string() + "': cannot open: No such file or directory"));

  const fs::path plain = dir / "weights.safetensors";
  save_safetensors(plain, {{"w", iota({2})}}, {{"framework", "pt"}});
  msg = error_message([&] { load_checkpoint(plain); });
  CHECK(contains(msg, "checkpoint '" + plain.string() +
                          "': not a rewind checkpoint (its metadata has no \"format\" entry; "
                          "expected \"rewind-checkpoint-1\")"));
}

TEST_CASE("checkpoint: bad metadata and stray tensors are errors naming the file and the key") {
  TempDir dir("checkpoint");
  const fs::path path = dir / "bad.safetensors";
  const SafetensorsMetadata good = {{"format", "rewind-checkpoint-1"},
                                    {"step", "5"},
                                    {"rng.seed", "1"},
                                    {"rng.stream", "2"},
                                    {"rng.counter", "3"}};
  const StateDict tensors = {{"model.w", iota({2})}};
  save_safetensors(path, tensors, good);
  CHECK(load_checkpoint(path).step == 5);  // the baseline that each case below breaks

  struct Case {
    const char* key;
    const char* value;  // nullptr: remove the key
    std::string fragment;
  };
  const std::vector<Case> cases = {
      {"format", "rewind-checkpoint-2",
       "unsupported format \"rewind-checkpoint-2\" (expected \"rewind-checkpoint-1\")"},
      {"step", "12a",
       "metadata \"step\" is \"12a\", not a decimal integer in [0, "
       "9223372036854775807]"},
      {"step", "-1", "metadata \"step\" is \"-1\", not a decimal integer"},
      {"step", "", "metadata \"step\" is \"\", not a decimal integer"},
      {"step", " 5", "metadata \"step\" is \" 5\""},
      {"step", "9223372036854775808", "metadata \"step\" is \"9223372036854775808\""},
      {"step", nullptr, "metadata has no \"step\" entry"},
      {"rng.seed", "18446744073709551616",
       "metadata \"rng.seed\" is \"18446744073709551616\", not a decimal integer in [0, "
       "18446744073709551615]"},
      {"rng.stream", "0x10", "metadata \"rng.stream\" is \"0x10\""},
      {"rng.counter", nullptr, "metadata has no \"rng.counter\" entry"},
      {"rng.extra", "1", "unexpected metadata entry \"rng.extra\""},
      {"epoch", "1", "unexpected metadata entry \"epoch\""},
  };
  for (const Case& c : cases) {
    INFO("metadata ", c.key, " = ", c.value ? c.value : "(removed)");
    SafetensorsMetadata metadata = good;
    if (c.value) {
      metadata[c.key] = c.value;
    } else {
      metadata.erase(c.key);
    }
    save_safetensors(path, tensors, metadata);
    std::string msg = error_message([&] { load_checkpoint(path); });
    CHECK(contains(msg, "checkpoint '" + path.string() + "': "));
    CHECK_MESSAGE(contains(msg, c.fragment), msg);
  }

  save_safetensors(path, {{"model.w", iota({2})}, {"extra.w", iota({2})}}, good);
  std::string msg = error_message([&] { load_checkpoint(path); });
  CHECK(contains(msg, "checkpoint '" + path.string() + "': unexpected tensor \"extra.w\""));
}

TEST_CASE("checkpoint: a negative step is refused and a failed save keeps the previous file") {
  TempDir dir("checkpoint");
  const fs::path path = dir / "ckpt.safetensors";
  Checkpoint c = example_checkpoint();
  save_checkpoint(path, c);
  c.step = -1;
  CHECK(contains(error_message([&] { save_checkpoint(path, c); }), "step -1 is negative"));
  c.step = 2000;
  c.optimizer["broken"] = Tensor();
  CHECK(contains(error_message([&] { save_checkpoint(path, c); }),
                 "tensor \"optim.broken\" is undefined"));
  CHECK(load_checkpoint(path).step == 1234);
  CHECK(std::distance(fs::directory_iterator(dir / "."), fs::directory_iterator()) == 1);
}

}  // namespace rw::nn
