#pragma once
// Tape-based reverse-mode autograd (a Wengert list). Ops append nodes in execution order, which is
// already topological, so backward walks the tape in reverse with no graph sort.
//
// Lifetime: a node holds its inputs' metadata strongly and its outputs' weakly, so a node whose
// outputs are all dead can never receive a gradient; such nodes are swept from the tape (in
// reverse, so whole dead chains go in one pass). A backward without retain_graph frees the nodes it
// ran.
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <span>
#include <vector>

#include "core/tensor.h"

namespace rw {

class Tape;

struct AutogradMeta {
  uint64_t id = 0;             // unique per process, never reused
  bool is_leaf = true;         // created by the user, not by a recorded op
  bool graph_freed = false;    // its node already ran in a backward without retain_graph
  const Tape* tape = nullptr;  // the tape that recorded its node (null for leaves)
  Tensor grad;                 // accumulated gradient (leaves only)
};

// A tensor kept for backward. Stores an alias without autograd metadata (so a node never keeps its
// own outputs alive) and the storage version at save time: backward through a tensor modified in
// place afterwards is an error instead of a silently wrong gradient.
class SavedTensor {
 public:
  SavedTensor() = default;
  explicit SavedTensor(const Tensor& t);
  // The saved tensor; throws rw::Error naming `op` when it was modified in place since saving.
  const Tensor& get(const char* op) const;
  bool defined() const { return tensor_.defined(); }

 private:
  Tensor tensor_;
  uint64_t version_ = 0;
};

// Computes the gradients of a node's inputs from the gradients of its outputs. grad_outputs has one
// entry per output (zeros where an output got no gradient); the result has one entry per input
// (undefined where an input needs none). Runs with grad mode off.
using BackwardFn = std::function<std::vector<Tensor>(std::span<const Tensor> grad_outputs)>;

struct Node {
  const char* name = "";
  std::vector<std::shared_ptr<AutogradMeta>> inputs;  // null where an input needs no grad
  std::vector<std::weak_ptr<AutogradMeta>> outputs;
  std::vector<uint64_t> output_ids;
  std::vector<Tensor> output_templates;  // for zero grads of multi-output nodes (no data kept)
  BackwardFn backward;
};

class Tape {
 public:
  std::size_t size() const { return nodes_.size(); }
  void clear() { nodes_.clear(); }
  // Drops nodes whose outputs are all dead.
  void sweep();

 private:
  friend void record_node(Node node);
  friend struct BackwardRun;
  std::vector<Node> nodes_;
  std::size_t sweep_at_ = 1024;
};

// The tape ops currently record on (the innermost TapeScope, else the thread's tape).
Tape& current_tape();

// Grad mode: when off, ops record nothing.
bool grad_mode_enabled();
class NoGradGuard {
 public:
  NoGradGuard();
  ~NoGradGuard();
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool previous_;
};
class EnableGradGuard {
 public:
  EnableGradGuard();
  ~EnableGradGuard();
  EnableGradGuard(const EnableGradGuard&) = delete;
  EnableGradGuard& operator=(const EnableGradGuard&) = delete;

 private:
  bool previous_;
};

// Opens a fresh, independent tape for this thread (and enables grad mode) while alive: a block can
// be recomputed and differentiated in isolation, as the reversible backward does. Nodes left on it
// are discarded at scope exit.
class TapeScope {
 public:
  TapeScope();
  ~TapeScope();
  TapeScope(const TapeScope&) = delete;
  TapeScope& operator=(const TapeScope&) = delete;
  Tape& tape() { return *tape_; }

 private:
  std::unique_ptr<Tape> tape_;
  bool previous_grad_mode_;
};

// True when grad mode is on and any given tensor requires grad: the op must record a node.
bool needs_grad(std::initializer_list<const Tensor*> inputs);
bool needs_grad(std::span<const Tensor> inputs);

// Records a node on the current tape: `outputs` become non-leaf tensors that require grad.
// Inputs that do not require grad are recorded as null (their gradient is dropped).
void record(const char* name, std::span<const Tensor> inputs, std::span<const Tensor> outputs,
            BackwardFn backward);
inline void record(const char* name, std::initializer_list<Tensor> inputs, const Tensor& output,
                   BackwardFn backward) {
  record(name, std::span<const Tensor>(inputs.begin(), inputs.size()),
         std::span<const Tensor>(&output, 1), std::move(backward));
}

struct BackwardOptions {
  bool retain_graph = false;  // keep the nodes (and their saved tensors) for another backward
};
// Accumulates d root / d leaf into every reachable leaf's grad(). `grad` defaults to ones for a
// one-element root (an error otherwise, naming the shape).
void backward(const Tensor& root, const Tensor& grad = {}, BackwardOptions options = {});
// Several roots at once, each with its gradient (an undefined gradient means ones, one-element
// roots only).
void backward(std::span<const Tensor> roots, std::span<const Tensor> grads,
              BackwardOptions options = {});

struct GradOptions {
  bool retain_graph = false;
  // A gradient that reaches a tensor requiring grad that is neither one of `inputs` nor computed on
  // this tape (a leaf, or a result recorded on an outer tape) is dropped, as torch.autograd.grad
  // drops it. With this set it is an rw::Error naming the op that produced the gradient and the
  // tensor's shape: the reversible stack uses it to catch a block reading an undeclared parameter.
  bool error_on_unlisted = false;
};
// The gradients of the roots with respect to `inputs` (leaves or results), one per input, without
// touching any tensor's grad(): torch.autograd.grad. An input no gradient reaches gets an undefined
// Tensor. Gradients stop at the inputs: what computed an input is not walked for their sake.
std::vector<Tensor> grad(std::span<const Tensor> roots, std::span<const Tensor> grad_roots,
                         std::span<const Tensor> inputs, GradOptions options = {});

}  // namespace rw
