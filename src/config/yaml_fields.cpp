#include "crmstream/config/yaml_fields.h"

#include <algorithm>
#include <cmath>
#include <filesystem>

namespace crmstream::config {
namespace {

// Edit distance, for "did you mean" suggestions on unknown keys.
size_t Distance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t prev = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t cur = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, prev + (a[i - 1] == b[j - 1] ? 0 : 1)});
      prev = cur;
    }
  }
  return row[b.size()];
}

template <typename T>
bool Convert(const YAML::Node& n, T* out) {
  if (!n.IsScalar()) return false;
  try {
    *out = n.as<T>();
    return true;
  } catch (const YAML::Exception&) {
    return false;
  }
}

}  // namespace

Result<YAML::Node> LoadYamlFile(const std::string& path) {
  if (!std::filesystem::exists(path)) return Status::NotFound(path + ": no such file");
  try {
    return YAML::LoadFile(path);
  } catch (const YAML::ParserException& e) {
    return Status::InvalidArgument(path + ":" + std::to_string(e.mark.line + 1) + ":" +
                                   std::to_string(e.mark.column + 1) + ": " + e.msg);
  } catch (const YAML::Exception& e) {
    return Status::IOError(path + ": " + e.what());
  }
}

YamlFields::YamlFields(const std::string& file, const YAML::Node& node, std::string path_prefix)
    : file_(file), node_(node), prefix_(std::move(path_prefix)) {
  if (node_ && !node_.IsNull() && !node_.IsMap()) {
    errors_.push_back(Where(node_, "") + "expected a mapping of fields");
  }
}

std::string YamlFields::Where(const YAML::Node& node, const std::string& key) const {
  std::string where = file_;
  if (node && node.Mark().line >= 0) {
    where +=
        ":" + std::to_string(node.Mark().line + 1) + ":" + std::to_string(node.Mark().column + 1);
  }
  where += ": ";
  std::string field = prefix_;
  if (!key.empty()) field += (field.empty() ? "" : ".") + key;
  if (!field.empty()) where += field + ": ";
  return where;
}

YAML::Node YamlFields::Lookup(const std::string& key) {
  known_.insert(key);
  if (!node_ || !node_.IsMap()) return YAML::Node();
  return node_[key];
}

bool YamlFields::Has(const std::string& key) const {
  return node_ && node_.IsMap() && node_[key] && !node_[key].IsNull();
}

void YamlFields::Fail(const std::string& key, const std::string& message) {
  YAML::Node n = (node_ && node_.IsMap() && node_[key]) ? node_[key] : node_;
  errors_.push_back(Where(n, key) + message);
}

void YamlFields::Read(const std::string& key, std::string* out) {
  YAML::Node n = Lookup(key);
  if (!n || n.IsNull()) return;
  if (!Convert(n, out)) Fail(key, "expected a string");
}

void YamlFields::Read(const std::string& key, bool* out) {
  YAML::Node n = Lookup(key);
  if (!n || n.IsNull()) return;
  if (!Convert(n, out)) Fail(key, "expected true or false");
}

void YamlFields::Read(const std::string& key, int* out, int min, int max) {
  int64_t v = *out;
  Read(key, &v, min, max);
  *out = static_cast<int>(v);
}

void YamlFields::Read(const std::string& key, int64_t* out, int64_t min, int64_t max) {
  YAML::Node n = Lookup(key);
  if (!n || n.IsNull()) return;
  int64_t v = 0;
  if (!Convert(n, &v)) return Fail(key, "expected an integer, got '" + n.Scalar() + "'");
  if (v < min || v > max) {
    return Fail(key, std::to_string(v) + " is out of range [" + std::to_string(min) + ", " +
                         std::to_string(max) + "]");
  }
  *out = v;
}

void YamlFields::Read(const std::string& key, double* out, double min, double max) {
  YAML::Node n = Lookup(key);
  if (!n || n.IsNull()) return;
  double v = 0;
  if (!Convert(n, &v) || !std::isfinite(v)) {
    return Fail(key, "expected a number, got '" + n.Scalar() + "'");
  }
  if (v < min || v > max) {
    return Fail(key, n.Scalar() + " is out of range [" + std::to_string(min) + ", " +
                         std::to_string(max) + "]");
  }
  *out = v;
}

void YamlFields::Read(const std::string& key, std::vector<int>* out, int min, int max) {
  YAML::Node n = Lookup(key);
  if (!n || n.IsNull()) return;
  if (!n.IsSequence()) return Fail(key, "expected a list of integers");
  std::vector<int> values;
  for (const auto& item : n) {
    int v = 0;
    if (!Convert(item, &v)) {
      errors_.push_back(Where(item, key) + "expected an integer, got '" + item.Scalar() + "'");
      return;
    }
    if (v < min || v > max) {
      errors_.push_back(Where(item, key) + std::to_string(v) + " is out of range [" +
                        std::to_string(min) + ", " + std::to_string(max) + "]");
      return;
    }
    values.push_back(v);
  }
  *out = std::move(values);
}

void YamlFields::Read(const std::string& key, std::vector<std::string>* out) {
  YAML::Node n = Lookup(key);
  if (!n || n.IsNull()) return;
  if (!n.IsSequence()) return Fail(key, "expected a list of strings");
  std::vector<std::string> values;
  for (const auto& item : n) {
    std::string v;
    if (!Convert(item, &v)) {
      errors_.push_back(Where(item, key) + "expected a string");
      return;
    }
    values.push_back(std::move(v));
  }
  *out = std::move(values);
}

void YamlFields::Read(const std::string& key, std::map<std::string, std::string>* out) {
  YAML::Node n = Lookup(key);
  if (!n || n.IsNull()) return;
  if (!n.IsMap()) return Fail(key, "expected a mapping of names to values");
  for (const auto& kv : n) {
    std::string k, v;
    if (!Convert(kv.first, &k) || !Convert(kv.second, &v)) {
      errors_.push_back(Where(kv.second, key) + "expected scalar values");
      return;
    }
    (*out)[k] = v;
  }
}

void YamlFields::ReadChoice(const std::string& key, std::string* out,
                            const std::vector<std::string>& allowed) {
  std::string v = *out;
  Read(key, &v);
  if (std::find(allowed.begin(), allowed.end(), v) == allowed.end()) {
    std::string list;
    for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
    return Fail(key, "'" + v + "' is not one of: " + list);
  }
  *out = v;
}

void YamlFields::ReadObject(const std::string& key, const std::function<void(YamlFields&)>& fn) {
  YAML::Node n = Lookup(key);
  if (!n || n.IsNull()) n = YAML::Node();
  std::string path = prefix_.empty() ? key : prefix_ + "." + key;
  YamlFields child(file_, n, path);
  fn(child);
  Status st = child.Finish();
  if (!st.ok()) errors_.push_back(st.message());
}

void YamlFields::ReadObjectList(const std::string& key,
                                const std::function<void(YamlFields&, size_t)>& fn) {
  YAML::Node n = Lookup(key);
  if (!n || n.IsNull()) return;
  if (!n.IsSequence()) return Fail(key, "expected a list");
  std::string path = prefix_.empty() ? key : prefix_ + "." + key;
  for (size_t i = 0; i < n.size(); ++i) {
    YamlFields child(file_, n[i], path + "[" + std::to_string(i) + "]");
    fn(child, i);
    Status st = child.Finish();
    if (!st.ok()) errors_.push_back(st.message());
  }
}

Status YamlFields::Finish() {
  if (node_ && node_.IsMap()) {
    for (const auto& kv : node_) {
      std::string k = kv.first.Scalar();
      if (known_.count(k)) continue;
      std::string hint;
      size_t best = 3;
      for (const auto& candidate : known_) {
        size_t d = Distance(k, candidate);
        if (d < best) {
          best = d;
          hint = " (did you mean '" + candidate + "'?)";
        }
      }
      errors_.push_back(Where(kv.first, k) + "unknown field" + hint);
    }
  }
  if (errors_.empty()) return Status::OK();
  return Status::InvalidArgument(errors_.front());
}

}  // namespace crmstream::config
