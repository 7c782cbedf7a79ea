#pragma once
// Where a training run gets its tokens: a source of training batches whose order is a pure
// function of a Philox state (saved in checkpoints, so a resumed run sees the same batches), and
// of fixed held-out batches for evaluation.
#include <cstdint>
#include <memory>
#include <optional>
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
// train split; evaluation on the first windows of the valid split, in order. The file is read
// with read_file_bytes, so a gzip-compressed file (.gz, dictzip .dz) gives its decompressed text.
class ByteTextData : public TrainingData {
 public:
  // `label` (optional) names the corpus in description(): "GCIDE dictionary".
  ByteTextData(const std::string& path, int64_t length, uint64_t seed, std::string label = "");
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
  std::string label_;
  std::shared_ptr<reformer::ByteDataset> data_;
  int64_t length_;
  reformer::WindowSampler sampler_;
};

// The default text corpus: GCIDE, the Collaborative International Dictionary of English (Debian's
// dict-gcide, a dictzip file of about 40 MB of ASCII text once decompressed: entries of
// Webster's 1913 with light markup such as \pro*nun"ci*a`tion\, {cross references} and
// [1913 Webster] source tags), split 90/5/5 like enwik8.
inline constexpr const char* kGcidePath = "/usr/share/dictd/gcide.dict.dz";
// When `path` is missing, rw::Error saying to install dict-gcide (tools/setup.sh does) or to pass
// --data FILE.
std::unique_ptr<ByteTextData> gcide_corpus(int64_t length, uint64_t seed,
                                           const std::string& path = kGcidePath);

// Sequence length of text runs when none is given.
inline constexpr int64_t kDefaultTextLength = 512;

// The data that a tool's --data names:
//   ""  or "gcide"   the default corpus (gcide_corpus)
//   "fashion-mnist"  Fashion-MNIST images as pixel sequences (image_data.h; length 784)
//   anything else    a file of text (or any bytes), possibly gzip-compressed
// `length`: tokens per sequence; unset, the data's own (kDefaultTextLength for text). Fashion-MNIST
// sequences are whole images, so any other length is an error. A file that does not exist is an
// error naming it and the names above (a file called like a name: pass ./gcide).
std::unique_ptr<TrainingData> open_training_data(const std::string& data,
                                                 std::optional<int64_t> length, uint64_t seed);

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
