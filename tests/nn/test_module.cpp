// nn::Module (nn/module.h) and the containers (nn/containers.h): dotted names through nested
// Sequential/ModuleList, registration order, counts, train/eval propagation, zero_grad,
// state_dict round trips and strict/non-strict loading, dtype conversion, seeding, and errors.
#include <doctest/doctest.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "autograd/tape.h"
#include "core/generator_scope.h"
#include "core/ops.h"
#include "nn/activations.h"
#include "nn/containers.h"
#include "nn/dropout.h"
#include "nn/layer_norm.h"
#include "nn/linear.h"
#include "nn/module.h"
#include "nn/nn_test_util.h"
#include "test_util.h"

namespace rw::nn {

using namespace rw::test;

namespace {

// A module with a parameter and a buffer of its own and nested containers.
class Block : public Module {
 public:
  explicit Block(Generator& gen) {
    scale = ones({4});
    register_parameter("scale", scale);
    running = zeros({4});
    register_buffer("running", running);
    layers = register_module(
        "layers", std::make_shared<ModuleList>(
                      std::make_shared<Linear>(4, 4, true, gen),
                      std::make_shared<Sequential>(std::make_shared<Linear>(4, 4, false, gen),
                                                   std::make_shared<ReLU>())));
    norm = register_module("norm", std::make_shared<LayerNorm>(4));
  }
  std::string type_name() const override { return "Block"; }
  Tensor forward(const Tensor& x) override {
    Tensor h = mul(x, scale);
    for (const auto& layer : *layers) h = layer->forward(h);
    return norm->forward(h);
  }

  Tensor scale, running;
  std::shared_ptr<ModuleList> layers;
  std::shared_ptr<LayerNorm> norm;
};

// Sequential(Linear(3, 4), GELU, Dropout(0.5), Block, Linear(4, 2)), drawn from `seed`.
std::shared_ptr<Sequential> make_model(uint64_t seed) {
  Generator gen(seed);
  return std::make_shared<Sequential>(std::make_shared<Linear>(3, 4, true, gen),
                                      std::make_shared<GELU>(), std::make_shared<Dropout>(0.5),
                                      std::make_shared<Block>(gen),
                                      std::make_shared<Linear>(4, 2, true, gen));
}

std::vector<std::string> names_of(const std::vector<std::pair<std::string, Tensor>>& named) {
  std::vector<std::string> out;
  for (const auto& [name, _] : named) out.push_back(name);
  return out;
}

// Every entry of two state dicts is bitwise equal (same keys, shapes, dtypes and values).
void check_same_state(const StateDict& a, const StateDict& b) {
  REQUIRE(a.size() == b.size());
  for (const auto& [name, t] : a) {
    INFO(name);
    REQUIRE(b.contains(name));
    CHECK(b.at(name).shape() == t.shape());
    CHECK(b.at(name).dtype() == t.dtype());
    CHECK(host(b.at(name)) == host(t));
  }
}

}  // namespace

TEST_CASE("Module: dotted names through nested Sequential and ModuleList, in registration order") {
  auto model = make_model(1);
  const std::vector<std::string> expected{"0.weight",        "0.bias",
                                          "3.scale",         "3.layers.0.weight",
                                          "3.layers.0.bias", "3.layers.1.0.weight",
                                          "3.norm.weight",   "3.norm.bias",
                                          "4.weight",        "4.bias"};
  CHECK(names_of(model->named_parameters()) == expected);
  CHECK(names_of(model->named_buffers()) == std::vector<std::string>{"3.running"});

  // parameters() is named_parameters() without the names: the same tensors, in the same order.
  const auto named = model->named_parameters();
  const auto params = model->parameters();
  REQUIRE(params.size() == named.size());
  for (std::size_t i = 0; i < params.size(); ++i) CHECK(params[i].is_same(named[i].second));
  auto block = std::dynamic_pointer_cast<Block>((*model)[3]);
  REQUIRE(block != nullptr);
  CHECK(params[2].is_same(block->scale));

  std::vector<std::string> modules;
  for (const auto& [name, m] : model->named_modules())
    modules.push_back(name + ":" + m->type_name());
  CHECK(modules == std::vector<std::string>{":Sequential", "0:Linear", "1:GELU", "2:Dropout",
                                            "3:Block", "3.layers:ModuleList", "3.layers.0:Linear",
                                            "3.layers.1:Sequential", "3.layers.1.0:Linear",
                                            "3.layers.1.1:ReLU", "3.norm:LayerNorm", "4:Linear"});
  const StateDict state = model->state_dict();  // the parameters and the buffer
  CHECK(state.size() == expected.size() + 1);
  CHECK(state.contains("3.running"));
  // 3*4+4 + 4 + 4*4+4 + 4*4 + 4+4 + 4*2+2
  CHECK(model->num_parameters() == 74);
}

TEST_CASE("Module: train/eval reach every descendant, dropout follows") {
  auto model = make_model(2);
  for (const auto& [name, m] : model->named_modules()) CHECK(m->is_training());
  model->eval();
  for (const auto& [name, m] : model->named_modules()) {
    INFO(name);
    CHECK_FALSE(m->is_training());
  }
  Tensor x = randn({5, 3}, PhiloxState{1, 0, 0});
  CHECK(host(model->forward(x)) == host(model->forward(x)));  // no dropout in eval
  model->train();
  for (const auto& [name, m] : model->named_modules()) CHECK(m->is_training());
  Generator gen(3);
  GeneratorScope scope(gen);
  CHECK(host(model->forward(x)) != host(model->forward(x)));  // a fresh mask per call
}

TEST_CASE("Module: zero_grad drops every parameter's gradient") {
  auto model = make_model(4);
  model->eval();
  backward(sum(model->forward(randn({5, 3}, PhiloxState{2, 0, 0}))));
  for (const auto& [name, p] : model->named_parameters()) {
    INFO(name);
    CHECK(p.grad().defined());
  }
  model->zero_grad();
  for (const auto& [name, p] : model->named_parameters()) CHECK_FALSE(p.grad().defined());
}

TEST_CASE("Module: the same seed gives bit-identical parameters, another seed others") {
  check_same_state(make_model(7)->state_dict(), make_model(7)->state_dict());
  CHECK(host(make_model(7)->parameters()[0]) != host(make_model(8)->parameters()[0]));
  // A generator passed explicitly and the same generator installed as current_generator() agree.
  Generator g1(9), g2(9);
  Linear explicit_gen(5, 6, true, g1);
  GeneratorScope scope(g2);
  Linear scoped(5, 6);
  check_same_state(explicit_gen.state_dict(), scoped.state_dict());
}

TEST_CASE("Module: state_dict round trip into a freshly built model is bit-exact") {
  auto source = make_model(11);
  {
    NoGradGuard no_grad;
    auto block = std::dynamic_pointer_cast<Block>((*source)[3]);
    fill_(block->running, 3.5);  // buffers travel too
    fill_(block->norm->bias, 0.25);
  }
  const StateDict state = source->state_dict();
  for (const auto& [name, t] : state) CHECK_FALSE(t.requires_grad());

  auto target = make_model(12);
  const Tensor held = target->parameters()[0];  // e.g. held by an optimizer
  const LoadResult result = target->load_state_dict(state);
  CHECK(result.missing_keys.empty());
  CHECK(result.unexpected_keys.empty());
  check_same_state(target->state_dict(), state);
  // Copied in place: a handle taken before the load sees the new values.
  CHECK(held.is_same(target->parameters()[0]));
  CHECK(host(held) == host(state.at("0.weight")));
  for (const auto& [name, p] : target->named_parameters()) {
    CHECK(p.is_leaf());
    CHECK(p.requires_grad());
  }
  source->eval();
  target->eval();
  Tensor x = randn({4, 3}, PhiloxState{3, 0, 0});
  CHECK(host(target->forward(x)) == host(source->forward(x)));
}

TEST_CASE("Module: strict loading names every missing, unexpected and mis-shaped key") {
  auto model =
      std::make_shared<Sequential>(std::make_shared<Linear>(3, 4), std::make_shared<Linear>(4, 2));
  // Shape mismatches: each key with the checkpoint's and the model's shape.
  auto wider =
      std::make_shared<Sequential>(std::make_shared<Linear>(3, 5), std::make_shared<Linear>(5, 2));
  std::string msg = error_message([&] { model->load_state_dict(wider->state_dict()); });
  CHECK(contains(msg, "Sequential.load_state_dict: shape mismatch"));
  CHECK(contains(msg, "0.weight: checkpoint shape [5, 3] vs model shape [4, 3]"));
  CHECK(contains(msg, "0.bias: checkpoint shape [5] vs model shape [4]"));
  CHECK(contains(msg, "1.weight: checkpoint shape [2, 5] vs model shape [2, 4]"));
  CHECK_FALSE(contains(msg, "1.bias"));
  // Non-strict loading refuses a shape mismatch as well.
  CHECK(contains(error_message([&] { model->load_state_dict(wider->state_dict(), false); }),
                 "0.weight: checkpoint shape [5, 3] vs model shape [4, 3]"));

  // Missing and unexpected keys.
  const StateDict before = model->state_dict();
  StateDict state =
      std::make_shared<Sequential>(std::make_shared<Linear>(3, 4), std::make_shared<Linear>(4, 2))
          ->state_dict();
  state.erase("1.bias");
  state.erase("0.weight");
  state.emplace("2.weight", zeros({2, 2}));
  state.emplace("extra", zeros({1}));
  msg = error_message([&] { model->load_state_dict(state); });
  CHECK(contains(msg,
                 "Sequential.load_state_dict (strict): missing keys [0.weight, 1.bias]; "
                 "unexpected keys [2.weight, extra]"));
  // A failed load changes nothing.
  for (const auto& [name, t] : model->state_dict()) CHECK(host(t) == host(before.at(name)));

  // Non-strict: the lists come back and the keys present are loaded.
  const LoadResult result = model->load_state_dict(state, false);
  CHECK(result.missing_keys == std::vector<std::string>{"0.weight", "1.bias"});
  CHECK(result.unexpected_keys == std::vector<std::string>{"2.weight", "extra"});
  CHECK(host(model->state_dict().at("0.bias")) == host(state.at("0.bias")));
  CHECK(host(model->state_dict().at("0.weight")) == host(before.at("0.weight")));
}

TEST_CASE("Module: to(f64) converts every parameter and buffer, then runs in f64") {
  auto model = make_model(13);
  model->eval();
  Tensor x = randn({4, 3}, PhiloxState{4, 0, 0});
  const std::vector<double> y32 = host(model->forward(x));
  model->to(DType::f64);
  for (const auto& [name, t] : model->state_dict()) {
    INFO(name);
    CHECK(t.dtype() == DType::f64);
  }
  for (const Tensor& p : model->parameters()) {
    CHECK(p.is_leaf());
    CHECK(p.requires_grad());
  }
  Tensor y = model->forward(x.to(DType::f64));
  CHECK(y.dtype() == DType::f64);
  check_close(y, y32, 1e-5);  // the f32 values, computed in f64
  backward(sum(y));
  CHECK(model->parameters()[0].grad().dtype() == DType::f64);
  CHECK(contains(error_message([&] { model->to(DType::i64); }),
                 "Sequential.to: modules convert to floating dtypes only, got i64"));
}

TEST_CASE("Sequential and ModuleList: forward chains, indexing, iteration, errors") {
  Generator gen(14);
  auto a = std::make_shared<Linear>(3, 4, true, gen);
  auto b = std::make_shared<Linear>(4, 2, false, gen);
  auto seq = std::make_shared<Sequential>(a, std::make_shared<ReLU>(), b);
  Tensor x = randn({5, 3}, gen);
  CHECK(host(seq->forward(x)) == host(b->forward(relu(a->forward(x)))));
  CHECK(host(Sequential().forward(x)) == host(x));  // empty: identity

  ModuleList list(std::vector<std::shared_ptr<Module>>{a});
  list.push_back(b);
  CHECK(list.size() == 2);
  CHECK(list[1] == b);
  CHECK(list.get<Linear>(1)->out_features() == 2);
  std::vector<std::string> names;
  for (const auto& [name, m] : list.named_children()) names.push_back(name);
  CHECK(names == std::vector<std::string>{"0", "1"});
  int count = 0;
  for (const auto& m : list) count += m->type_name() == "Linear";
  CHECK(count == 2);

  CHECK(contains(error_message([&] { list[2]; }),
                 "ModuleList: index 2 is out of range for 2 modules"));
  CHECK(contains(error_message([&] { seq->get<Linear>(1); }),
                 "Sequential: module 1 is a ReLU, not the type asked for"));
  CHECK(contains(error_message([&] { list.forward(x); }),
                 "ModuleList: this module has no single-tensor forward"));
  CHECK(contains(error_message([&] { list.push_back(nullptr); }),
                 "ModuleList: cannot add a null module at index 2"));
  CHECK(contains(error_message([&] { Sequential(std::vector<std::shared_ptr<Module>>{nullptr}); }),
                 "Sequential: cannot add a null module at index 0"));
}

TEST_CASE("Module: registration refuses duplicate and dotted names") {
  struct Bad : Module {
    explicit Bad(const std::string& second) {
      a = zeros({2});
      b = zeros({2});
      register_parameter("w", a);
      register_parameter(second, b);
    }
    std::string type_name() const override { return "Bad"; }
    Tensor a, b;
  };
  CHECK(contains(error_message([] { Bad("w"); }), "Bad: the name 'w' is registered twice"));
  CHECK(contains(error_message([] { Bad("x.y"); }),
                 "Bad: invalid member name 'x.y' (non-empty, no dots)"));
}

}  // namespace rw::nn
