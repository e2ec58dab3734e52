#include "crmstream/feeds/feed_spec.h"

#include <algorithm>
#include <cmath>

#include "crmstream/config/yaml_fields.h"

namespace crmstream::feeds {
namespace {

using config::YamlFields;

constexpr std::array<std::string_view, 10> kEventFields = {
    "event_id", "customer_id", "timestamp", "type",     "channel",
    "amount",   "currency",    "plan",      "order_id", "item_id"};
constexpr std::array<std::string_view, 4> kRequiredEventFields = {"event_id", "customer_id",
                                                                  "timestamp", "type"};

// A rule names exactly one operation: column, constant, join, product or sign_of.
void ReadFieldRule(YamlFields& f, FieldRule* rule) {
  int ops = 0;
  if (f.Has("column")) {
    ++ops;
    rule->op = FieldRule::Op::kColumn;
    rule->columns.resize(1);
    f.Read("column", &rule->columns[0]);
  }
  if (f.Has("constant")) {
    ++ops;
    rule->op = FieldRule::Op::kConstant;
    f.Read("constant", &rule->constant);
  }
  if (f.Has("join")) {
    ++ops;
    rule->op = FieldRule::Op::kJoin;
    f.Read("join", &rule->columns);
  }
  if (f.Has("product")) {
    ++ops;
    rule->op = FieldRule::Op::kProduct;
    f.Read("product", &rule->columns);
  }
  if (f.Has("sign_of")) {
    ++ops;
    rule->op = FieldRule::Op::kSignOf;
    rule->columns.resize(1);
    f.Read("sign_of", &rule->columns[0]);
    f.Read("positive", &rule->positive);
    f.Read("negative", &rule->negative);
    if (rule->positive.empty()) f.Fail("positive", "sign_of needs the text for values >= 0");
    if (rule->negative.empty()) f.Fail("negative", "sign_of needs the text for values < 0");
  }
  f.Read("integer", &rule->integer);
  f.Read("absolute", &rule->absolute);
  if (ops != 1) {
    f.Fail("", "a field rule needs exactly one of column, constant, join, product, sign_of");
  } else if (rule->op != FieldRule::Op::kConstant) {
    if (rule->columns.empty() || std::any_of(rule->columns.begin(), rule->columns.end(),
                                             [](const std::string& c) { return c.empty(); })) {
      f.Fail("", "column names must not be empty");
    }
  }
}

void ReadEventSource(YamlFields& s, EventFeedSpec* e) {
  s.ReadObject("fields", [&](YamlFields& fields) {
    for (std::string_view name : kEventFields) {
      const std::string key(name);
      if (!fields.Has(key)) continue;
      fields.ReadObject(key, [&](YamlFields& r) { ReadFieldRule(r, &e->fields[key]); });
    }
    for (std::string_view name : kRequiredEventFields) {
      if (!e->fields.count(std::string(name))) {
        fields.Fail("", "the event field '" + std::string(name) + "' needs a rule");
      }
    }
  });
  if (!s.Has("fields")) s.Fail("fields", "an events feed needs field rules");
}

void ReadTableSource(YamlFields& s, TableFeedSpec* t) {
  s.Read("id", &t->id_column);
  s.ReadObject("label", [&](YamlFields& l) {
    l.Read("column", &t->label_column);
    l.Read("positive", &t->positive);
    l.Read("negative", &t->negative);
    if (t->positive == t->negative) l.Fail("negative", "must differ from positive");
  });
  if (t->label_column.empty()) s.Fail("label", "a table feed needs a label column");
  s.ReadObjectList("numeric", [&](YamlFields& n, size_t) {
    NumericColumn c;
    n.Read("name", &c.name);
    n.Read("column", &c.column);
    std::string transform = "none";
    n.ReadChoice("transform", &transform, {"none", "log1p"});
    c.log1p = transform == "log1p";
    n.Read("missing", &c.missing, -1e300, 1e300);
    if (c.column.empty()) n.Fail("column", "must name a column");
    if (c.name.empty()) c.name = c.column;
    t->numeric.push_back(std::move(c));
  });
  s.ReadObject("categorical", [&](YamlFields& c) {
    c.Read("columns", &t->categorical);
    c.Read("max_categories", &t->max_categories, 1, 1024);
  });
  if (t->numeric.empty() && t->categorical.empty()) {
    s.Fail("numeric", "a table feed needs numeric or categorical columns");
  }
  s.ReadObjectList("interactions", [&](YamlFields& i, size_t) {
    Interaction x;
    i.Read("categorical", &x.categorical);
    i.Read("numeric", &x.numeric);
    if (std::find(t->categorical.begin(), t->categorical.end(), x.categorical) ==
        t->categorical.end()) {
      i.Fail("categorical", "'" + x.categorical + "' is not one of the categorical columns");
    }
    if (std::none_of(t->numeric.begin(), t->numeric.end(),
                     [&](const NumericColumn& n) { return n.name == x.numeric; })) {
      i.Fail("numeric", "'" + x.numeric + "' is not the name of a numeric feature");
    }
    t->interactions.push_back(std::move(x));
  });
}

}  // namespace

bool IsFeedFile(const std::string& path) {
  auto root = config::LoadYamlFile(path);
  return root.ok() && root->IsMap() && (*root)["source"].IsDefined();
}

Result<FeedSpec> LoadFeedSpec(const std::string& path) {
  CRM_ASSIGN_OR_RETURN(YAML::Node root, config::LoadYamlFile(path));
  FeedSpec spec;
  spec.file = path;
  YamlFields f(path, root);
  f.Read("name", &spec.name);
  std::string kind = "events";
  f.ReadObject("source", [&](YamlFields& s) {
    s.ReadChoice("kind", &kind, {"events", "table", "series"});
    std::string format = "csv";
    s.ReadChoice("format", &format, {"csv"});
    if (kind == "events") {
      spec.kind = FeedKind::kEvents;
      s.Read("pipeline", &spec.events.pipeline);
      ReadEventSource(s, &spec.events);
    } else if (kind == "table") {
      spec.kind = FeedKind::kTable;
      ReadTableSource(s, &spec.table);
    } else {
      spec.kind = FeedKind::kSeries;
      s.Read("timestamp", &spec.series.timestamp_column);
      s.Read("value", &spec.series.value_column);
      s.Read("detector_name", &spec.series.detector_name);
    }
  });
  if (!f.Has("source")) f.Fail("source", "a feed needs a source section");
  if (spec.kind == FeedKind::kTable) {
    f.ReadObject("model", [&](YamlFields& m) {
      std::string type = "bayesian_logistic";
      m.ReadChoice("type", &type, {"bayesian_logistic"});
      m.Read("prior_variance", &spec.table.prior_variance, 1e-9, 1e9);
      m.Read("intercept_prior_variance", &spec.table.intercept_prior_variance, 1e-9, 1e9);
    });
  }
  if (spec.name.empty()) f.Fail("name", "a feed needs a name");
  CRM_RETURN_NOT_OK(f.Finish());
  return spec;
}

std::filesystem::path ResolvePipelinePath(const FeedSpec& spec) {
  std::filesystem::path p(spec.events.pipeline);
  if (p.is_absolute()) return p;
  return std::filesystem::path(spec.file).parent_path() / p;
}

}  // namespace crmstream::feeds
