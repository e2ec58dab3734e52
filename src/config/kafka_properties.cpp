#include "crmstream/config/kafka_properties.h"

#include <cctype>

#include "crmstream/common/private_file.h"

namespace crmstream::config {
namespace {

std::string_view Trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

}  // namespace

Status ReadKafkaPropertiesFile(const std::string& path, KafkaProperties* out) {
  CRM_ASSIGN_OR_RETURN(std::string content, ReadPrivateFile(path, "--kafka-properties"));
  std::string_view rest(content);
  size_t line_number = 0;
  while (!rest.empty()) {
    const size_t end = rest.find('\n');
    std::string_view line = Trim(rest.substr(0, end));
    rest = end == std::string_view::npos ? std::string_view() : rest.substr(end + 1);
    ++line_number;
    if (line.empty() || line.front() == '#') continue;
    const size_t eq = line.find('=');
    const std::string_view key = eq == std::string_view::npos ? line : Trim(line.substr(0, eq));
    if (eq == std::string_view::npos || key.empty()) {
      return Status::InvalidArgument(path + ":" + std::to_string(line_number) +
                                     ": expected key=value (the line is not shown: it may hold "
                                     "a secret)");
    }
    (*out)[std::string(key)] = std::string(Trim(line.substr(eq + 1)));
  }
  return Status::OK();
}

void ReadKafkaPropertiesFromEnvironment(const char* const* environment, KafkaProperties* out) {
  if (environment == nullptr) return;
  for (const char* const* e = environment; *e != nullptr; ++e) {
    const std::string_view entry(*e);
    if (!entry.starts_with(kKafkaEnvironmentPrefix)) continue;
    const size_t eq = entry.find('=');
    if (eq == std::string_view::npos || eq == kKafkaEnvironmentPrefix.size()) continue;
    std::string key(
        entry.substr(kKafkaEnvironmentPrefix.size(), eq - kKafkaEnvironmentPrefix.size()));
    for (char& c : key) {
      c = c == '_' ? '.' : static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    }
    (*out)[key] = std::string(entry.substr(eq + 1));
  }
}

Status ParseKafkaPropertyArgument(std::string_view argument, size_t position,
                                  KafkaProperties* out) {
  const size_t eq = argument.find('=');
  if (eq == std::string_view::npos || eq == 0) {
    return Status::InvalidArgument("-X argument " + std::to_string(position) +
                                   ": expected key=value (the argument is not shown: it may hold "
                                   "a secret)");
  }
  (*out)[std::string(argument.substr(0, eq))] = std::string(argument.substr(eq + 1));
  return Status::OK();
}

}  // namespace crmstream::config
