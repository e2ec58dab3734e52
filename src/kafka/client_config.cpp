#include "crmstream/kafka/client_config.h"

#include <spdlog/spdlog.h>

#include <array>

namespace crmstream::kafka {
namespace {

// Values of these keys must never reach a log or an error message.
bool IsSecretKey(std::string_view key) {
  return key.find("password") != std::string_view::npos ||
         key.find("secret") != std::string_view::npos ||
         key.find("ssl.key.pem") != std::string_view::npos ||
         key.find("sasl.jaas") != std::string_view::npos ||
         key.find("sasl.oauthbearer.config") != std::string_view::npos;
}

std::string Redact(std::string text, const std::string& secret) {
  if (secret.empty()) return text;
  for (size_t at = text.find(secret); at != std::string::npos; at = text.find(secret, at)) {
    text.replace(at, secret.size(), "<redacted>");
    at += 10;
  }
  return text;
}

void LogToSpdlog(const rd_kafka_t* rk, int level, const char* facility, const char* line) {
  // librdkafka uses syslog levels: 0..3 errors, 4 warning, 5..6 info, 7 debug.
  const char* name = rk ? rd_kafka_name(rk) : "rdkafka";
  if (level <= 3) {
    spdlog::error("[{}] {}: {}", name, facility, line);
  } else if (level == 4) {
    spdlog::warn("[{}] {}: {}", name, facility, line);
  } else if (level <= 6) {
    spdlog::info("[{}] {}: {}", name, facility, line);
  } else {
    spdlog::debug("[{}] {}: {}", name, facility, line);
  }
}

}  // namespace

ClientConfig& ClientConfig::Set(std::string key, std::string value) {
  properties_.insert_or_assign(std::move(key), std::move(value));
  return *this;
}

ClientConfig& ClientConfig::SetDefault(std::string key, std::string value) {
  properties_.try_emplace(std::move(key), std::move(value));
  return *this;
}

std::optional<std::string_view> ClientConfig::Get(std::string_view key) const {
  auto it = properties_.find(key);
  if (it == properties_.end()) return std::nullopt;
  return std::string_view(it->second);
}

Status SetConfProperty(rd_kafka_conf_t* conf, const std::string& key, const std::string& value) {
  std::array<char, 512> errstr{};
  if (rd_kafka_conf_set(conf, key.c_str(), value.c_str(), errstr.data(), errstr.size()) ==
      RD_KAFKA_CONF_OK) {
    return Status::OK();
  }
  std::string reason(errstr.data());
  if (IsSecretKey(key)) reason = Redact(std::move(reason), value);
  return Status::InvalidArgument("kafka property '" + key + "': " + reason);
}

Status ClientConfig::ApplyTo(rd_kafka_conf_t* conf) const {
  for (const auto& [key, value] : properties_) {
    CRM_RETURN_NOT_OK(SetConfProperty(conf, key, value));
  }
  return Status::OK();
}

Result<ConfHandle> ClientConfig::BuildConf() const {
  ConfHandle conf(rd_kafka_conf_new());
  CRM_RETURN_NOT_OK(ApplyTo(conf.get()));
  return conf;
}

void RouteLogsToSpdlog(rd_kafka_conf_t* conf) { rd_kafka_conf_set_log_cb(conf, &LogToSpdlog); }

}  // namespace crmstream::kafka
