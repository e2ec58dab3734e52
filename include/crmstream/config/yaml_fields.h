// Typed reading of YAML mappings with errors a user can act on: every
// message names the file, the line and column, and the field path
// ("pipelines/crm.yaml:12:3: features.windows: expected a list of integers").
// Unknown keys are errors too, with the closest known key suggested, so a
// typo fails at start-up instead of being silently ignored.
//
// Used once at start-up; not thread-safe.
#pragma once

#include <yaml-cpp/yaml.h>

#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "crmstream/common/status.h"

namespace crmstream::config {

// Loads a YAML file; a syntax error names the file and line.
Result<YAML::Node> LoadYamlFile(const std::string& path);

class YamlFields {
 public:
  // `node` must be a mapping (or null: then every field keeps its default).
  YamlFields(const std::string& file, const YAML::Node& node, std::string path_prefix = "");

  // Each reader leaves *out unchanged when the key is absent. Errors are
  // collected; status() reports the first.
  void Read(const std::string& key, std::string* out);
  void Read(const std::string& key, bool* out);
  void Read(const std::string& key, int* out, int min, int max);
  void Read(const std::string& key, int64_t* out, int64_t min, int64_t max);
  void Read(const std::string& key, double* out, double min, double max);
  void Read(const std::string& key, std::vector<int>* out, int min, int max);
  void Read(const std::string& key, std::vector<std::string>* out);
  // A mapping of scalar strings (e.g. librdkafka properties passed through).
  void Read(const std::string& key, std::map<std::string, std::string>* out);
  // A string that must be one of `allowed`.
  void ReadChoice(const std::string& key, std::string* out,
                  const std::vector<std::string>& allowed);
  // A nested mapping read by `fn`, with the field path extended.
  void ReadObject(const std::string& key, const std::function<void(YamlFields&)>& fn);
  // A list of mappings, each read by `fn(fields, index)`.
  void ReadObjectList(const std::string& key, const std::function<void(YamlFields&, size_t)>& fn);
  bool Has(const std::string& key) const;

  // Adds an error located at `key` (or at the mapping if the key is absent).
  void Fail(const std::string& key, const std::string& message);

  // Flags keys that no reader asked for; returns the first error, if any.
  Status Finish();

 private:
  YAML::Node Lookup(const std::string& key);
  std::string Where(const YAML::Node& node, const std::string& key) const;

  const std::string& file_;
  YAML::Node node_;
  std::string prefix_;
  std::set<std::string> known_;
  std::vector<std::string> errors_;
  std::vector<YamlFields*> children_;
};

}  // namespace crmstream::config
