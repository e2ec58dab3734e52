// ADWIN: adaptive windowing drift detector (Bifet and Gavalda, "Learning
// from Time-Changing Data with Adaptive Windowing", SDM 2007; ADWIN2, the
// exponential-histogram version).
//
// The detector keeps a window of the most recent values of a stream (here, a
// model's 0/1 errors) as an exponential histogram: buckets of 2^i values, at
// most `max_buckets` per size, each holding its sum and variance, so memory
// is O(max_buckets * log(width)). Every `clock` values it checks every split
// of the window into an older and a newer part and, while some split has means
// further apart than
//     eps = sqrt(2 / m * var * ln(2 / d')) + 2 / (3 m) * ln(2 / d')
// (m the harmonic mean of the two lengths, var the window's variance,
// d' = delta / ln(width)), drops the oldest bucket. A drop is a detected
// change: with probability at least 1 - delta no change is reported while
// the stream's mean is constant.
//
// Update never allocates once the histogram has grown to its width's size.
// Not mergeable (an ordered history of one stream). Not thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "crmstream/common/binary_io.h"
#include "crmstream/common/status.h"

namespace crmstream::models {

struct AdwinOptions {
  // Confidence delta in (0, 1): smaller detects fewer, surer changes.
  double delta = 0.002;
  // Buckets kept per size before two merge, in [2, 64].
  int max_buckets = 5;
  // Values between two checks for a change, in [1, 1 << 20].
  int clock = 32;
  // Shortest sub-window a cut may leave, in [1, 1 << 20].
  int min_window = 5;

  Status Validate() const;
};

class Adwin {
 public:
  static constexpr uint16_t kBlobVersion = 1;

  static Result<Adwin> Create(const AdwinOptions& options);

  // Adds one value; true when a change was detected (the window shrank).
  bool Update(double value);

  double mean() const { return width_ > 0 ? total_ / static_cast<double>(width_) : 0.0; }
  double variance() const { return width_ > 0 ? variance_ / static_cast<double>(width_) : 0.0; }
  uint64_t width() const { return width_; }
  uint64_t detections() const { return detections_; }
  const AdwinOptions& options() const { return options_; }
  // Forgets the window (keeps the options and the detection count).
  void Reset();

  // Embeds the state in a larger blob, or stands alone (BlobKind::kAdwin).
  void AppendTo(BinaryWriter& out) const;
  static Result<Adwin> ReadFrom(BinaryReader& in);
  std::string Serialize() const;
  static Result<Adwin> Deserialize(std::string_view blob);

 private:
  explicit Adwin(const AdwinOptions& options) : options_(options) {}

  struct Row {
    // Newest first; count <= max_buckets + 1.
    std::vector<double> totals;
    std::vector<double> variances;
    int count = 0;
  };
  void InsertValue(double value);
  void Compress();
  void DropOldest();
  bool CheckForChange();

  AdwinOptions options_;
  std::vector<Row> rows_;  // row i: buckets of 2^i values
  uint64_t width_ = 0;
  double total_ = 0.0;
  double variance_ = 0.0;  // sum of squared deviations from the mean
  uint64_t since_check_ = 0;
  uint64_t detections_ = 0;
};

}  // namespace crmstream::models
