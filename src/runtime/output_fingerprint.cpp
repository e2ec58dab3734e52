#include "runtime/output_fingerprint.h"

#include <spdlog/spdlog.h>

#include <fstream>
#include <iterator>
#include <map>
#include <sstream>

#include "crmstream/common/hash.h"

namespace crmstream::runtime {
namespace {

std::map<std::string, std::string> Lines(const std::string& text) {
  std::map<std::string, std::string> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    const size_t eq = line.find('=');
    if (eq != std::string::npos) out[line.substr(0, eq)] = line.substr(eq + 1);
  }
  return out;
}

// "key: A then, B now; ..." for every item that differs.
std::string Changes(const std::string& before, const std::string& now) {
  const auto a = Lines(before), b = Lines(now);
  std::string out;
  auto add = [&](const std::string& key, const std::string& was, const std::string& is) {
    if (!out.empty()) out += "; ";
    out += key + ": " + (was.empty() ? "(none)" : was) + " then, " + (is.empty() ? "(none)" : is) +
           " now";
  };
  for (const auto& [key, value] : b) {
    auto it = a.find(key);
    const std::string was = it == a.end() ? "" : it->second;
    if (was != value) add(key, was, value);
  }
  for (const auto& [key, value] : a) {
    if (!b.count(key)) add(key, value, "");
  }
  return out;
}

}  // namespace

Result<std::string> OutputFingerprint(const config::EngineConfig& config,
                                      const pipeline::PipelineSpec& pipeline,
                                      const pipeline::ProcessorOptions& options) {
  std::string definition = "built-in";
  if (!pipeline.file.empty()) {
    std::ifstream in(pipeline.file, std::ios::binary);
    if (!in) return Status::IOError(pipeline.file + ": cannot read the pipeline definition");
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    char hex[17];
    std::snprintf(hex, sizeof(hex), "%016llx", static_cast<unsigned long long>(Hash64(text)));
    definition = hex;
  }
  std::string out;
  auto line = [&out](std::string_view key, const std::string& value) {
    out.append(key).append("=").append(value).append("\n");
  };
  line("state_format", std::to_string(state::kOutputStateFormatVersion));
  line("guarantee", std::string(config::GuaranteeName(config.guarantee)));
  line("commit_interval_ms", std::to_string(config.commit_interval_ms));
  line("max_output_bytes", std::to_string(options.max_output_bytes));
  // Only where a topic's own limit is tighter: the fingerprints of stores
  // written before topics' limits were read stay as they were.
  std::string by_kind;
  for (int k = 0; k < schema::kOutputKindCount; ++k) {
    const size_t bound = options.max_output_bytes_by_kind[static_cast<size_t>(k)];
    if (bound == 0) continue;
    if (!by_kind.empty()) by_kind += ",";
    by_kind += std::string(schema::OutputKindName(static_cast<schema::OutputKind>(k))) + ":" +
               std::to_string(bound);
  }
  if (!by_kind.empty()) line("max_output_bytes_by_kind", by_kind);
  line("dedup_window_per_partition", std::to_string(options.dedup_capacity));
  line("pipeline", pipeline.name);
  line("pipeline_definition", definition);
  std::string emit;
  const std::pair<const char*, bool> flags[] = {{"customer_scores", options.emit_customer_scores},
                                                {"churn_alerts", options.emit_churn_alerts},
                                                {"segments", options.emit_segments},
                                                {"anomalies", options.emit_anomalies},
                                                {"correlations", options.emit_correlations},
                                                {"associations", options.emit_associations},
                                                {"recommendations", options.emit_recommendations}};
  for (const auto& [name, on] : flags) {
    if (on) emit += (emit.empty() ? "" : ",") + std::string(name);
  }
  line("emit", emit);
  line("models_enabled", options.models_enabled ? "true" : "false");
  line("associations_enabled", options.associations_enabled ? "true" : "false");
  line("association_interval_ms", std::to_string(options.association_interval_ms));
  line("association_max_rules", std::to_string(options.association_max_rules));
  line("recommendations_enabled", options.recommendations_enabled ? "true" : "false");
  line("recommendations_top_n", std::to_string(options.recommendations_top_n));
  line("centroid_interval_ms", std::to_string(options.centroid_interval_ms));
  line("correlation_interval_ms", std::to_string(options.correlation_interval_ms));
  line("max_future_skew_ms", std::to_string(options.decoder.max_future_skew_ms));
  return out;
}

Status CheckOutputFingerprint(state::StateStore* store, const std::string& fingerprint,
                              config::Guarantee guarantee, bool accept_change) {
  CRM_ASSIGN_OR_RETURN(auto recorded, store->GetMetadata(kOutputFingerprintMetadata));
  if (recorded && *recorded != fingerprint) {
    const std::string changes = Changes(*recorded, fingerprint);
    const bool exactly_once = guarantee != config::Guarantee::kAtLeastOnce;
    if (exactly_once && !accept_change) {
      return Status::InvalidArgument(
          store->path().string() +
          ": what shapes the outputs changed since this state was written (" + changes +
          "). Under exactly_once a restart regenerates the outputs since the last checkpoint "
          "and drops those delivered before by their numbers, so another configuration would "
          "drop or repeat the wrong ones. To go on with the new configuration, start once with "
          "--accept-config-change (safe when the last run stopped with its final checkpoint); "
          "or start afresh with a new state_dir and kafka.group_id; or go back to the "
          "configuration the state was written with");
    }
    spdlog::warn("the configuration that shapes the outputs changed since the last run ({}){}",
                 changes, exactly_once ? ": accepted (--accept-config-change)" : "");
  }
  if (!recorded || *recorded != fingerprint) {
    CRM_RETURN_NOT_OK(store->PutMetadata(kOutputFingerprintMetadata, fingerprint));
  }
  return Status::OK();
}

}  // namespace crmstream::runtime
