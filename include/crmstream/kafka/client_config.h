// ClientConfig: the librdkafka properties a client is created with. Anything a
// user sets (bootstrap.servers, security.protocol, sasl.*, ssl.*, tuning) is
// passed through unchanged to rd_kafka_conf_set; the module adds its own
// defaults only where the user set nothing.
//
// Thread-safety: a plain value type; const methods may be called concurrently.
#pragma once

#include <initializer_list>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "crmstream/common/status.h"
#include "crmstream/kafka/handles.h"

namespace crmstream::kafka {

class ClientConfig {
 public:
  ClientConfig() = default;
  ClientConfig(std::initializer_list<std::pair<const std::string, std::string>> properties)
      : properties_(properties) {}

  // Sets (or replaces) one property. Not validated until BuildConf.
  ClientConfig& Set(std::string key, std::string value);
  // Sets the property only when the user has not set it (module defaults).
  ClientConfig& SetDefault(std::string key, std::string value);
  std::optional<std::string_view> Get(std::string_view key) const;
  bool Has(std::string_view key) const { return properties_.find(key) != properties_.end(); }
  const std::map<std::string, std::string, std::less<>>& properties() const { return properties_; }

  // A new rd_kafka_conf_t holding every property. An unknown key or a bad
  // value yields InvalidArgument naming the key and librdkafka's message
  // (values of secret-looking keys, e.g. sasl.password, are redacted).
  Result<ConfHandle> BuildConf() const;

  // Applies every property to an existing conf (same errors as BuildConf).
  Status ApplyTo(rd_kafka_conf_t* conf) const;

 private:
  std::map<std::string, std::string, std::less<>> properties_;
};

// Applies one property; InvalidArgument naming the key on failure.
Status SetConfProperty(rd_kafka_conf_t* conf, const std::string& key, const std::string& value);

// Routes librdkafka's log lines to the process logger (spdlog) instead of
// stderr. Called by every client this module creates.
void RouteLogsToSpdlog(rd_kafka_conf_t* conf);

}  // namespace crmstream::kafka
