#include "autograd/tape.h"

#include <atomic>
#include <unordered_map>
#include <utility>

#include "core/ops.h"

namespace rw {
namespace {

thread_local bool t_grad_mode = true;
thread_local Tape t_base_tape;
thread_local Tape* t_current_tape = nullptr;
// The tape whose backward is running on this thread: nothing may be recorded on it meanwhile
// (backward holds a reference into its node list, which a record could reallocate or sweep).
thread_local const Tape* t_tape_in_backward = nullptr;

std::atomic<uint64_t> g_next_id{1};

bool requires_grad_impl(const Tensor& t) { return t.defined() && t.impl().autograd != nullptr; }

}  // namespace

SavedTensor::SavedTensor(const Tensor& t) {
  if (!t.defined()) return;
  tensor_ = t.detach();
  version_ = t.storage()->version();
}

const Tensor& SavedTensor::get(const char* op) const {
  if (tensor_.defined()) {
    uint64_t now = tensor_.storage()->version();
    RW_CHECK(now == version_,
             "{}: backward needs a tensor (shape {}) that was modified in place after it was saved "
             "(version {} at save, {} now); use an out-of-place op or clone() before modifying",
             op, tensor_.shape(), version_, now);
  }
  return tensor_;
}

Tape& current_tape() { return t_current_tape != nullptr ? *t_current_tape : t_base_tape; }

void Tape::sweep() {
  std::vector<Node> kept;
  kept.reserve(nodes_.size());
  // Reverse, so releasing a dead node's inputs can kill the node that produced them.
  for (std::size_t i = nodes_.size(); i-- > 0;) {
    Node& node = nodes_[i];
    bool alive = false;
    for (const auto& w : node.outputs) alive = alive || !w.expired();
    if (alive) {
      kept.push_back(std::move(node));
    } else {
      Node dead = std::move(node);  // destroyed here, releasing its inputs now
    }
  }
  nodes_.assign(std::make_move_iterator(kept.rbegin()), std::make_move_iterator(kept.rend()));
  sweep_at_ = std::max<std::size_t>(1024, 2 * nodes_.size());
}

bool grad_mode_enabled() { return t_grad_mode; }

NoGradGuard::NoGradGuard() : previous_(t_grad_mode) { t_grad_mode = false; }
NoGradGuard::~NoGradGuard() { t_grad_mode = previous_; }
EnableGradGuard::EnableGradGuard() : previous_(t_grad_mode) { t_grad_mode = true; }
EnableGradGuard::~EnableGradGuard() { t_grad_mode = previous_; }

// TapeScopes nest; the previous tape is found again through the stack below.
namespace {
thread_local std::vector<Tape*> t_tape_stack;
}

TapeScope::TapeScope() : tape_(std::make_unique<Tape>()), previous_grad_mode_(t_grad_mode) {
  t_tape_stack.push_back(t_current_tape);
  t_current_tape = tape_.get();
  t_grad_mode = true;
}

TapeScope::~TapeScope() {
  t_current_tape = t_tape_stack.back();
  t_tape_stack.pop_back();
  t_grad_mode = previous_grad_mode_;
}

bool needs_grad(std::initializer_list<const Tensor*> inputs) {
  if (!t_grad_mode) return false;
  for (const Tensor* t : inputs) {
    if (t != nullptr && requires_grad_impl(*t)) return true;
  }
  return false;
}

bool needs_grad(std::span<const Tensor> inputs) {
  if (!t_grad_mode) return false;
  for (const Tensor& t : inputs) {
    if (requires_grad_impl(t)) return true;
  }
  return false;
}

void record_node(Node node) {
  Tape& tape = current_tape();
  RW_CHECK(&tape != t_tape_in_backward,
           "{}: cannot record on a tape while its backward runs (grad mode was enabled inside a "
           "backward function; higher-order gradients are not supported); to differentiate "
           "inside a backward, recompute under a TapeScope",
           node.name);
  tape.nodes_.push_back(std::move(node));
  if (tape.nodes_.size() >= tape.sweep_at_) tape.sweep();
}

void record(const char* name, std::span<const Tensor> inputs, std::span<const Tensor> outputs,
            BackwardFn backward) {
  Node node;
  node.name = name;
  node.backward = std::move(backward);
  node.inputs.reserve(inputs.size());
  for (const Tensor& in : inputs) {
    node.inputs.push_back(requires_grad_impl(in) ? in.impl().autograd : nullptr);
  }
  const Tape* tape = &current_tape();
  node.outputs.reserve(outputs.size());
  node.output_ids.reserve(outputs.size());
  for (const Tensor& out : outputs) {
    RW_ASSERT(out.impl().autograd == nullptr);
    auto meta = std::make_shared<AutogradMeta>();
    meta->id = g_next_id.fetch_add(1, std::memory_order_relaxed);
    meta->is_leaf = false;
    meta->tape = tape;
    out.impl().autograd = meta;
    node.outputs.push_back(meta);
    node.output_ids.push_back(meta->id);
    if (outputs.size() > 1) {
      // Keep only the shape, dtype and device: enough to make a zero gradient.
      node.output_templates.push_back(
          empty_strided(out.shape(), Strides(out.dim(), 0), options_of(out)));
    }
  }
  record_node(std::move(node));
}

// Where the gradients that reach an input of grad() go: captured, instead of accumulated into
// leaves (backward()).
struct GradCapture {
  std::unordered_map<const AutogradMeta*, std::vector<std::size_t>> slots;  // meta -> input indices
  std::vector<Tensor> grads;                                                // one per input
  bool error_on_unlisted = false;
};

struct BackwardRun {
  static void run(std::span<const Tensor> roots, std::span<const Tensor> grads, bool retain,
                  GradCapture* capture);
};

namespace {

// The gradient a leaf keeps: a fresh, contiguous, unaliased tensor, since optimizers update grads
// in place. A gradient that already is one (no other handle or view shares its storage: the usual
// case for a backward rule's result) is kept as it is instead of copied, so accumulating the
// parameters' gradients does not need twice their memory.
Tensor owned_gradient(Tensor g) {
  const bool sole_owner = g.impl_ptr().use_count() == 1 && g.storage().use_count() == 1 &&
                          g.impl().autograd == nullptr && g.offset() == 0 && g.is_contiguous() &&
                          g.storage()->nbytes() == g.nbytes();
  return sole_owner ? g : g.contiguous().clone();
}

}  // namespace

void BackwardRun::run(std::span<const Tensor> roots, std::span<const Tensor> grads, bool retain,
                      GradCapture* capture) {
  RW_CHECK(roots.size() == grads.size(), "backward: {} roots but {} gradients", roots.size(),
           grads.size());
  NoGradGuard no_grad;
  Tape& tape = current_tape();
  struct InBackward {  // restores the outer value: a backward may run another in a TapeScope
    const Tape* previous = std::exchange(t_tape_in_backward, nullptr);
    ~InBackward() { t_tape_in_backward = previous; }
  } in_backward;
  t_tape_in_backward = &tape;
  std::unordered_map<uint64_t, Tensor> pending;  // gradients of non-leaf tensors, by meta id

  auto accumulate = [&](const std::shared_ptr<AutogradMeta>& meta, Tensor g, const char* op) {
    if (capture != nullptr) {
      if (auto it = capture->slots.find(meta.get()); it != capture->slots.end()) {
        for (std::size_t i : it->second) {
          Tensor& slot = capture->grads[i];
          slot = slot.defined() ? add(slot, g) : g;
        }
        return;
      }
      if (meta->is_leaf || meta->tape != &tape) {
        RW_CHECK(!capture->error_on_unlisted,
                 "grad: {} sends a gradient (shape {}) to a tensor that requires grad but is not "
                 "among the inputs asked for",
                 op, g.shape());
        return;
      }
    } else if (meta->is_leaf) {
      meta->grad = meta->grad.defined() ? add(meta->grad, g) : owned_gradient(std::move(g));
      return;
    }
    RW_CHECK(!meta->graph_freed,
             "backward: {} needs the graph of an earlier result, which a previous backward "
             "already freed (pass retain_graph = true to the first backward)",
             op);
    auto [it, inserted] = pending.try_emplace(meta->id, g);
    if (!inserted) it->second = add(it->second, g);
  };
  for (std::size_t i = 0; i < roots.size(); ++i) {
    const Tensor& root = roots[i];
    RW_CHECK(root.requires_grad(),
             "backward: the root tensor (shape {}) does not require grad: no input of the "
             "computation requires grad, or it ran under NoGradGuard",
             root.shape());
    Tensor g = grads[i];
    if (!g.defined()) {
      RW_CHECK(root.numel() == 1,
               "backward: a gradient can be implied only for a one-element root, got shape {}; "
               "pass the gradient explicitly",
               root.shape());
      g = ones_like(root);
    }
    RW_CHECK(g.shape() == root.shape(), "backward: gradient shape {} differs from root shape {}",
             g.shape(), root.shape());
    RW_CHECK(g.dtype() == root.dtype() && g.device() == root.device(),
             "backward: gradient ({}, {}) differs from the root ({}, {}) in dtype or device",
             g.dtype(), g.device(), root.dtype(), root.device());
    const auto& meta = root.impl().autograd;
    RW_CHECK(meta->is_leaf || meta->tape == &tape,
             "backward: the root was recorded on another tape (a TapeScope that is not the "
             "current one)");
    accumulate(meta, g, "the root");
  }

  std::vector<Tensor> grad_outputs;
  for (std::size_t n = tape.nodes_.size(); n-- > 0;) {
    Node& node = tape.nodes_[n];
    if (!node.backward) continue;  // already run and freed
    bool any = false;
    grad_outputs.assign(node.output_ids.size(), Tensor());
    for (std::size_t k = 0; k < node.output_ids.size(); ++k) {
      auto it = pending.find(node.output_ids[k]);
      if (it == pending.end()) continue;
      grad_outputs[k] = std::move(it->second);
      pending.erase(it);
      any = true;
    }
    if (!any) continue;
    for (std::size_t k = 0; k < grad_outputs.size(); ++k) {
      if (!grad_outputs[k].defined()) grad_outputs[k] = zeros_like(node.output_templates[k]);
    }
    std::vector<Tensor> grad_inputs = node.backward(grad_outputs);
    RW_ASSERT(grad_inputs.size() == node.inputs.size());
    for (std::size_t k = 0; k < node.inputs.size(); ++k) {
      if (node.inputs[k] == nullptr || !grad_inputs[k].defined()) continue;
      accumulate(node.inputs[k], std::move(grad_inputs[k]), node.name);
    }
    if (!retain) {
      for (const auto& w : node.outputs) {
        if (auto meta = w.lock()) meta->graph_freed = true;
      }
      node.backward = nullptr;  // frees the saved tensors now, not at the end
      node.inputs.clear();
    }
  }
  if (!retain) tape.sweep();
}

void backward(const Tensor& root, const Tensor& grad, BackwardOptions options) {
  BackwardRun::run(std::span<const Tensor>(&root, 1), std::span<const Tensor>(&grad, 1),
                   options.retain_graph, nullptr);
}

void backward(std::span<const Tensor> roots, std::span<const Tensor> grads,
              BackwardOptions options) {
  BackwardRun::run(roots, grads, options.retain_graph, nullptr);
}

std::vector<Tensor> grad(std::span<const Tensor> roots, std::span<const Tensor> grad_roots,
                         std::span<const Tensor> inputs, GradOptions options) {
  GradCapture capture;
  capture.grads.resize(inputs.size());
  capture.error_on_unlisted = options.error_on_unlisted;
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    RW_CHECK(inputs[i].defined() && inputs[i].requires_grad(),
             "grad: input {} (shape {}) does not require grad", i,
             inputs[i].defined() ? inputs[i].shape() : Shape{});
    capture.slots[inputs[i].impl().autograd.get()].push_back(i);
  }
  BackwardRun::run(roots, grad_roots, options.retain_graph, &capture);
  return std::move(capture.grads);
}

}  // namespace rw
