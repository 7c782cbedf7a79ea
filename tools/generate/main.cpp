// rewind-generate: samples text from a rewind-train checkpoint (a byte-level ReformerLM).
//
//   rewind-generate --checkpoint run1/checkpoint.safetensors --prompt "The " --length 300
//   rewind-generate --checkpoint run1/checkpoint.safetensors --samples 3 --temperature 0.7
//   rewind-generate --checkpoint run1/checkpoint.safetensors --temperature 0    # greedy
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include "byte_text.h"
#include "common/checkpoint_model.h"
#include "core/error.h"
#include "core/tensor.h"
#include "models/reformer/generate.h"

namespace {

using namespace rw::tools;

struct Flags {
  std::filesystem::path checkpoint;
  std::string prompt;
  std::string prompt_file;
  int64_t length = 200;
  double temperature = 0.8;
  int64_t top_k = 0;
  double top_p = 1.0;
  uint64_t seed = 0;
  int64_t samples = 1;
  bool no_cache = false;
  bool escape = false;
  std::string device = "cpu";
};

// The flag checks that need no model, so a typo fails before a large checkpoint is read.
void check_flags(const Flags& f) {
  RW_CHECK(std::isfinite(f.temperature) && f.temperature >= 0,
           "--temperature must be a finite number >= 0 (0: greedy), got {}", f.temperature);
  RW_CHECK(f.top_k >= 0, "--top-k must be >= 0 (0: off), got {}", f.top_k);
  RW_CHECK(f.top_p > 0 && f.top_p <= 1, "--top-p must be in (0, 1] (1: off), got {}", f.top_p);
  RW_CHECK(f.length >= 0, "--length must be >= 0, got {}", f.length);
  RW_CHECK(f.samples >= 1, "--samples must be >= 1, got {}", f.samples);
}

std::string read_prompt_file(const std::string& path) {
  if (path == "-") {
    return {std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>()};
  }
  RW_CHECK(std::filesystem::is_regular_file(path),
           "--prompt-file '{}': no such file (or not a regular file)", path);
  std::ifstream in(path, std::ios::binary);
  RW_CHECK(in.good(), "--prompt-file '{}': cannot open it for reading", path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

void write_bytes(const std::string& bytes, bool escape) {
  const std::string text = escape ? escape_bytes(bytes) : bytes;
  std::fwrite(text.data(), 1, text.size(), stdout);
}

int generate_samples(const Flags& f) {
  check_flags(f);
  const rw::Device device = rw::Device::parse(f.device);
  const bool from_file = !f.prompt_file.empty();
  const std::string prompt = from_file ? read_prompt_file(f.prompt_file) : f.prompt;

  CheckpointModel loaded = load_checkpoint_model(f.checkpoint, device);
  rw::reformer::ReformerLM& model = *loaded.model;
  const rw::reformer::ReformerConfig& config = model.config();
  RW_CHECK(config.vocab_size <= 256,
           "checkpoint '{}': the model has a vocabulary of {} tokens; rewind-generate writes "
           "tokens as bytes and needs at most 256",
           f.checkpoint.string(), config.vocab_size);
  const PromptTokens input =
      prompt_tokens(prompt, from_file ? "--prompt-file" : "--prompt", config, f.length);
  std::fprintf(stderr, "rewind-generate: %s: step %ld, %ld parameters, vocabulary %ld\n",
               f.checkpoint.c_str(), static_cast<long>(loaded.step),
               static_cast<long>(model.num_parameters()), static_cast<long>(config.vocab_size));

  const auto P = static_cast<int64_t>(input.tokens.size());
  const rw::Tensor prompt_tensor = rw::from_vector(input.tokens, rw::Shape{1, P}).to(device);
  for (int64_t k = 0; k < f.samples; ++k) {
    // Sample k draws from seed + k, so any one sample is reproduced alone by --seed SEED+k.
    const uint64_t seed = f.seed + static_cast<uint64_t>(k);
    const auto start = std::chrono::steady_clock::now();
    const rw::Tensor out = rw::reformer::generate(model, prompt_tensor,
                                                  {.max_new_tokens = f.length,
                                                   .temperature = f.temperature,
                                                   .top_k = f.top_k,
                                                   .top_p = f.top_p,
                                                   .seed = seed,
                                                   .use_cache = !f.no_cache});
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const std::vector<int64_t> tokens = out.to(rw::Device::cpu()).to_vector<int64_t>();
    std::string text;
    for (std::size_t i = static_cast<std::size_t>(input.printed_from); i < tokens.size(); ++i) {
      text += static_cast<char>(static_cast<unsigned char>(tokens[i]));
    }
    if (f.samples > 1) {
      std::fprintf(stdout, "%s=== sample %ld of %ld (seed %llu) ===\n", k > 0 ? "\n" : "",
                   static_cast<long>(k + 1), static_cast<long>(f.samples),
                   static_cast<unsigned long long>(seed));
    }
    write_bytes(text, f.escape);
    std::fputc('\n', stdout);
    std::fflush(stdout);
    std::fprintf(stderr, "rewind-generate: %ld tokens in %.2f s (%.1f tokens/s%s)\n",
                 static_cast<long>(f.length), seconds,
                 seconds > 0 ? static_cast<double>(f.length) / seconds : 0.0,
                 f.no_cache ? ", uncached" : "");
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"rewind-generate: sample text from a rewind-train checkpoint"};
  Flags f;
  app.add_option("--checkpoint", f.checkpoint,
                 "a checkpoint written by rewind-train (RUN/checkpoint.safetensors)")
      ->required();
  auto* prompt = app.add_option(
      "--prompt", f.prompt,
      "text to continue; its bytes are the tokens (empty: start after a newline, not printed)");
  app.add_option("--prompt-file", f.prompt_file, "read the prompt from a file ('-': stdin)")
      ->excludes(prompt);
  app.add_option("--length", f.length, "new tokens (bytes) per sample")->capture_default_str();
  app.add_option("--temperature", f.temperature, "sampling temperature (0: greedy)")
      ->capture_default_str();
  app.add_option("--top-k", f.top_k, "sample among the k most likely bytes (0: off)")
      ->capture_default_str();
  app.add_option("--top-p", f.top_p,
                 "nucleus sampling: the smallest most-likely set with this mass (1: off)")
      ->capture_default_str();
  app.add_option("--seed", f.seed, "sampling seed; sample k of --samples uses seed + k")
      ->capture_default_str();
  app.add_option("--samples", f.samples, "how many samples (each under a '=== sample ===' line)")
      ->capture_default_str();
  app.add_flag("--no-cache", f.no_cache,
               "recompute the whole sequence at every step (slow; the same text, for comparison)");
  app.add_flag("--escape", f.escape,
               "write bytes other than printable ASCII, newline and tab as \\xNN (and \\ as \\\\)");
  app.add_option("--device", f.device, "cpu, cuda or cuda:N")->capture_default_str();
  app.footer(
      "Output (stdout): each sample is the prompt followed by the generated bytes and one "
      "newline;\n"
      "with --samples above 1 each is preceded by '=== sample K of N (seed S) ==='. The model's\n"
      "bytes are written as they are (it is a byte model: they need not be valid UTF-8) unless\n"
      "--escape is given. Progress and timings go to stderr.");
  CLI11_PARSE(app, argc, argv);

  try {
    return generate_samples(f);
  } catch (const rw::Error& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "rewind-generate: error: %s\n", e.what());
    return 1;
  }
}
