#pragma once
// Where a training run gets its tokens: a source of training batches whose order is a pure
// function of a Philox state (saved in checkpoints, so a resumed run sees the same batches), and
// of fixed held-out batches for evaluation.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/philox.h"
#include "core/tensor.h"
#include "models/reformer/byte_dataset.h"
#include "models/reformer/duplication_task.h"

namespace rw::tools {

struct TokenBatch {
  Tensor inputs;   // i64 [B, L]
  Tensor targets;  // i64 [B, L]; -100 where nothing is scored
};

class TrainingData {
 public:
  virtual ~TrainingData() = default;
  virtual std::string description() const = 0;  // for logs: "bytes of FILE", ...
  // The unit the loss is reported in besides nats: "bits/byte", "bits/dim".
  virtual std::string unit() const = 0;
  virtual int64_t vocab_size() const = 0;
  virtual int64_t length() const = 0;
  // The next training batch; advances state().
  virtual TokenBatch next(int64_t batch_size) = 0;
  // The held-out batches an evaluation averages over: the same ones at every call.
  virtual std::vector<TokenBatch> evaluation_batches(int64_t batch_size,
                                                     int64_t max_batches) const = 0;
  virtual PhiloxState state() const = 0;
  virtual void set_state(PhiloxState state) = 0;
};

// Byte-level language modelling over a text file (reformer::ByteDataset): random windows of the
// train split; evaluation on the first windows of the valid split, in order.
class ByteTextData : public TrainingData {
 public:
  ByteTextData(const std::string& path, int64_t length, uint64_t seed);
  std::string description() const override;
  std::string unit() const override { return "bits/byte"; }
  int64_t vocab_size() const override { return 256; }
  int64_t length() const override { return length_; }
  TokenBatch next(int64_t batch_size) override;
  std::vector<TokenBatch> evaluation_batches(int64_t batch_size,
                                             int64_t max_batches) const override;
  PhiloxState state() const override { return sampler_.state(); }
  void set_state(PhiloxState state) override { sampler_.set_state(state); }

 private:
  std::shared_ptr<reformer::ByteDataset> data_;
  int64_t length_;
  reformer::WindowSampler sampler_;
};

// The duplication task (`0 w 0 w`, paper Sec. 5): targets outside the second copy of w are
// ignored (-100), so the loss is scored on the copy only; evaluation uses fixed batches of their
// own seed.
class DuplicationData : public TrainingData {
 public:
  DuplicationData(int64_t length, uint64_t seed, int64_t vocab_size = 128);
  std::string description() const override;
  std::string unit() const override { return "bits/token"; }
  int64_t vocab_size() const override { return options_.vocab_size; }
  int64_t length() const override { return options_.length; }
  TokenBatch next(int64_t batch_size) override;
  std::vector<TokenBatch> evaluation_batches(int64_t batch_size,
                                             int64_t max_batches) const override;
  PhiloxState state() const override { return task_.state(); }
  void set_state(PhiloxState state) override { task_.set_state(state); }

  // The held-out batches with their loss masks, for accuracy.
  std::vector<reformer::DuplicationBatch> evaluation_tasks(int64_t batch_size,
                                                           int64_t max_batches) const;

 private:
  reformer::DuplicationTaskOptions options_;
  uint64_t seed_;
  reformer::DuplicationTask task_;
};

}  // namespace rw::tools
