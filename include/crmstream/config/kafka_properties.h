// Kafka client properties from outside the config file, so that secrets
// (sasl.password, ssl.key.password, ...) need not sit in the config or on a
// command line that `ps` shows:
//   - a properties file (`--kafka-properties FILE`): `key=value` lines,
//     '#' comments; refused unless only its owner can read it;
//   - the environment: CRMSTREAM_KAFKA_<PROPERTY>, the property upper-cased
//     with '.' as '_' (CRMSTREAM_KAFKA_SASL_PASSWORD -> sasl.password);
//   - `-X key=value` arguments.
// No error ever shows a value.
//
// Thread-safety: free functions; the caller owns the map.
#pragma once

#include <map>
#include <string>
#include <string_view>

#include "crmstream/common/status.h"

namespace crmstream::config {

using KafkaProperties = std::map<std::string, std::string>;

inline constexpr std::string_view kKafkaEnvironmentPrefix = "CRMSTREAM_KAFKA_";

// Adds (overriding) the properties of `path`. InvalidArgument with the
// file and line of a line that is not `key=value`, or when the file is open
// to group or others.
Status ReadKafkaPropertiesFile(const std::string& path, KafkaProperties* out);
// Adds (overriding) every CRMSTREAM_KAFKA_* variable of `environment` (a
// null-terminated array of "NAME=value", as `environ`).
void ReadKafkaPropertiesFromEnvironment(const char* const* environment, KafkaProperties* out);
// Adds (overriding) one `key=value` argument; InvalidArgument naming the
// argument's position, never its text, when it is not key=value.
Status ParseKafkaPropertyArgument(std::string_view argument, size_t position, KafkaProperties* out);

}  // namespace crmstream::config
