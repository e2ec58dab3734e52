// Data-set feeds: a pipeline file whose `source:` section says how the rows
// of a foreign CSV layout reach the engine, so that a new feed is
// configuration, not code (pipelines/online-retail.yaml, telco-churn.yaml,
// nab.yaml). Three kinds:
//
//  - events: each row becomes one input event (field rules below), and the
//    event goes through the same decoder, validator, dedup window, features
//    and models as a Kafka record, under the CRM pipeline named by
//    `pipeline:`. A row whose mapped event is invalid goes to the dead
//    letters with its reason and the original CSV line.
//  - table: each row is one labelled customer (numeric and categorical
//    columns, a label column); the churn model scores it, then learns from
//    it (prequential, one pass).
//  - series: `timestamp,value` rows of metric series scored by the streaming
//    anomaly detector; a NAB-layout folder is scored with the NAB profiles.
//
// LoadFeedSpec reads and checks the file with the project's YAML errors
// (file:line:col: field: message). Plain data; no threads.
#pragma once

#include <filesystem>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "crmstream/common/status.h"

namespace crmstream::feeds {

enum class FeedKind : uint8_t { kEvents, kTable, kSeries };

// How one field of the input event is computed from a row.
struct FieldRule {
  enum class Op : uint8_t {
    kColumn,    // the cell's text (empty cell: field absent)
    kConstant,  // a fixed text
    kJoin,      // cells joined with '|' (e.g. an event id from several columns)
    kProduct,   // the product of numeric cells, e.g. quantity * unit price
    kSignOf,    // `positive` or `negative` by the sign of a numeric cell
  };
  Op op = Op::kColumn;
  std::vector<std::string> columns;
  std::string constant;
  bool integer = false;   // kColumn: a number written without its fraction ("17850.0" -> 17850)
  bool absolute = false;  // kProduct: the absolute value
  std::string positive;   // kSignOf: the text for values >= 0
  std::string negative;   // kSignOf: the text for values < 0
};

struct EventFeedSpec {
  // The CRM pipeline file (validation, features, models); relative paths are
  // relative to the feed file's folder.
  std::string pipeline = "crm.yaml";
  // Event field name (event_id, customer_id, timestamp, type, channel,
  // amount, currency, plan, order_id, item_id) -> rule. event_id,
  // customer_id, timestamp and type are required.
  std::map<std::string, FieldRule> fields;
};

struct NumericColumn {
  std::string name;    // the feature's name (explanations, interactions)
  std::string column;  // the source column
  bool log1p = false;  // log(1 + max(v, 0)) before standardising
  // The value used for an empty or non-numeric cell; NaN: the row is an error.
  double missing = std::numeric_limits<double>::quiet_NaN();
};

struct Interaction {
  std::string categorical;  // a categorical column
  std::string numeric;      // a NumericColumn::name; one slope per category
};

struct TableFeedSpec {
  std::string id_column;
  std::string label_column;
  std::string positive = "1";  // the label's text for a churner
  std::string negative = "0";
  std::vector<NumericColumn> numeric;
  std::vector<std::string> categorical;
  int max_categories = 8;  // categories per column before the overflow slot
  std::vector<Interaction> interactions;
  double prior_variance = 0.1;  // churn model: ridge strength on standardised features
  double intercept_prior_variance = 10.0;
};

struct SeriesFeedSpec {
  std::string timestamp_column = "timestamp";
  std::string value_column = "value";
  std::string detector_name = "crmstream";  // the NAB results' detector name
};

struct FeedSpec {
  std::string file;
  std::string name;
  FeedKind kind = FeedKind::kEvents;
  EventFeedSpec events;
  TableFeedSpec table;
  SeriesFeedSpec series;
};

// True when the YAML file at `path` has a top-level `source:` section (a
// feed); false for a plain CRM pipeline or a file that cannot be read.
bool IsFeedFile(const std::string& path);

Result<FeedSpec> LoadFeedSpec(const std::string& path);

// The CRM pipeline file of an events feed, resolved against the feed file.
std::filesystem::path ResolvePipelinePath(const FeedSpec& spec);

}  // namespace crmstream::feeds
