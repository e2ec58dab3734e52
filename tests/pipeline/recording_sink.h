// An OutputSink that keeps every record, for assertions.
#pragma once

#include <string>
#include <vector>

#include "crmstream/pipeline/output_sink.h"

namespace crmstream::pipeline {

struct RecordedOutput {
  OutputKind kind;
  std::string key;
  std::string value;
};

class RecordingSink final : public OutputSink {
 public:
  void Emit(OutputKind kind, std::string_view key, std::string_view value) override {
    records.push_back({kind, std::string(key), std::string(value)});
  }
  std::vector<const RecordedOutput*> Of(OutputKind kind) const {
    std::vector<const RecordedOutput*> out;
    for (const auto& r : records) {
      if (r.kind == kind) out.push_back(&r);
    }
    return out;
  }
  std::vector<RecordedOutput> records;
};

}  // namespace crmstream::pipeline
