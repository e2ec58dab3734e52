#include "crmstream/feeds/event_feed.h"

#include <chrono>
#include <cmath>

#include "crmstream/common/clock.h"
#include "crmstream/common/json_writer.h"
#include "crmstream/feeds/csv_rows.h"
#include "crmstream/ingest/json_decoder.h"

namespace crmstream::feeds {
namespace {

// A field rule with its columns resolved to indices.
struct BoundRule {
  std::string field;
  FieldRule rule;
  std::vector<size_t> columns;
};

// Writes one mapped field into the open JSON object; an empty source cell
// leaves the field out (the validator then reports a missing field).
void WriteField(const BoundRule& b, const CsvRows& row, JsonWriter* w, std::string* scratch) {
  const FieldRule& r = b.rule;
  const bool numeric_field = b.field == "amount";
  switch (r.op) {
    case FieldRule::Op::kConstant:
      w->Field(b.field, std::string_view(r.constant));
      return;
    case FieldRule::Op::kColumn: {
      std::string_view cell = row.cell(b.columns[0]);
      if (cell.empty()) return;
      double v = 0;
      if ((r.integer || numeric_field) && ParseNumber(cell, &v)) {
        if (r.integer && std::fabs(v) < 9e15) {
          if (numeric_field) {
            w->Field(b.field, static_cast<int64_t>(std::trunc(v)));
          } else {
            scratch->assign(std::to_string(static_cast<int64_t>(std::trunc(v))));
            w->Field(b.field, std::string_view(*scratch));
          }
        } else {
          w->Field(b.field, v);
        }
        return;
      }
      // Not a number where one is expected: pass the text on, so the
      // validator rejects it with its own reason (wrong_type).
      w->Field(b.field, cell);
      return;
    }
    case FieldRule::Op::kJoin: {
      scratch->clear();
      for (size_t i = 0; i < b.columns.size(); ++i) {
        if (i) scratch->push_back('|');
        scratch->append(row.cell(b.columns[i]));
      }
      w->Field(b.field, std::string_view(*scratch));
      return;
    }
    case FieldRule::Op::kProduct: {
      double product = 1.0;
      for (size_t c : b.columns) {
        double v = 0;
        if (!ParseNumber(row.cell(c), &v)) return;  // missing factor: field absent
        product *= v;
      }
      if (r.absolute) product = std::fabs(product);
      w->Field(b.field, product);
      return;
    }
    case FieldRule::Op::kSignOf: {
      double v = 0;
      if (!ParseNumber(row.cell(b.columns[0]), &v)) return;
      w->Field(b.field, std::string_view(v < 0 ? r.negative : r.positive));
      return;
    }
  }
}

}  // namespace

Result<pipeline::ReplayStats> RunEventFeed(
    const FeedSpec& spec, const std::filesystem::path& input, pipeline::EventProcessor* processor,
    const std::function<void(uint64_t, uint64_t)>& progress) {
  if (spec.kind != FeedKind::kEvents) {
    return Status::InvalidArgument(spec.file + ": not an events feed");
  }
  CRM_ASSIGN_OR_RETURN(CsvRows rows, CsvRows::Open(input));
  std::vector<BoundRule> rules;
  for (const auto& [field, rule] : spec.events.fields) {
    BoundRule b{field, rule, {}};
    for (const std::string& c : rule.columns) {
      CRM_ASSIGN_OR_RETURN(size_t index, rows.Column(c));
      b.columns.push_back(index);
    }
    rules.push_back(std::move(b));
  }

  CRM_ASSIGN_OR_RETURN(ingest::EventDecoder decoder,
                       ingest::EventDecoder::Create(processor->options().decoder));
  ingest::Event event;
  std::string json, scratch;
  json.reserve(1024);
  const std::string topic = input.filename().string();
  const auto start = std::chrono::steady_clock::now();
  const int64_t now_ms = WallMs();
  pipeline::ReplayStats stats;
  while (true) {
    CRM_ASSIGN_OR_RETURN(bool more, rows.Next());
    if (!more) break;
    ++stats.records;
    const ingest::SourcePosition source{topic, 0, rows.line_number()};
    ingest::Rejection rejection;
    if (!rows.error().empty()) {
      rejection = {ingest::RejectReason::kMalformedCsv, "", rows.error()};
    } else {
      json.clear();
      JsonWriter w(&json);
      w.BeginObject();
      for (const BoundRule& b : rules) WriteField(b, rows, &w, &scratch);
      w.EndObject();
      rejection = decoder.Decode(json, now_ms, &event);
    }
    switch (processor->ProcessDecoded(rejection, event, rows.raw(), source, now_ms)) {
      case pipeline::ProcessOutcome::kAccepted:
        ++stats.accepted;
        break;
      case pipeline::ProcessOutcome::kDuplicate:
        ++stats.duplicates;
        break;
      case pipeline::ProcessOutcome::kRejected:
        ++stats.rejected;
        break;
    }
    // Scores and alerts refresh per batch-sized chunk, as in the engine.
    if ((stats.records & 2047) == 0) processor->RefreshScores();
    if (progress && (stats.records & 0xFFFF) == 0) progress(rows.bytes_read(), rows.file_size());
  }
  processor->FlushOutputs();
  if (progress) progress(rows.file_size(), rows.file_size());
  stats.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return stats;
}

}  // namespace crmstream::feeds
