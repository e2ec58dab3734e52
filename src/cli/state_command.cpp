// `crmstream state --state-dir DIR show|dump|verify|stats`: inspects the
// local state store read-only (works while an engine runs on it).
#include <cstdio>
#include <cstring>
#include <iostream>
#include <map>
#include <memory>
#include <sstream>

#include "cli_support.h"
#include "commands.h"
#include "crmstream/common/binary_io.h"
#include "crmstream/common/json_writer.h"
#include "crmstream/features/feature_store.h"
#include "crmstream/state/state_store.h"

namespace crmstream::cli {
namespace {

namespace fs = std::filesystem;

struct StateOptions {
  std::string state_dir = "state";
  std::string action;
  std::string customer_id;
  std::string windows;  // overrides the store's feature windows, "7,30,90"
};

// The store is DIR itself when it holds one, else DIR/store (the engine's
// layout: DIR also holds broker.addr).
fs::path StorePath(const std::string& state_dir) {
  const fs::path dir(state_dir);
  std::error_code ec;
  if (fs::exists(dir / "CURRENT", ec)) return dir;
  return dir / state::kStoreSubdirectory;
}

Result<features::FeatureSpec> SpecFor(const state::StateStore& store, const std::string& flag) {
  std::string windows = flag;
  if (windows.empty()) {
    CRM_ASSIGN_OR_RETURN(auto stored, store.GetMetadata(state::kFeatureWindowsMetadata));
    if (stored) windows = *stored;
  }
  features::FeatureSpec spec;
  if (!windows.empty()) {
    spec.window_days.clear();
    std::stringstream in(windows);
    std::string day;
    while (std::getline(in, day, ',')) {
      try {
        spec.window_days.push_back(std::stoi(day));
      } catch (const std::exception&) {
        return Status::InvalidArgument("feature windows '" + windows + "': not a list of days");
      }
    }
  }
  CRM_RETURN_NOT_OK(spec.Validate());
  return spec;
}

std::string Hex(std::string_view bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    out.push_back(kDigits[c >> 4]);
    out.push_back(kDigits[c & 15]);
  }
  return out;
}

// Kind, version and size of a sealed value, and whether its envelope checks.
void WriteBlobSummary(std::string_view value, JsonWriter* w) {
  uint16_t kind = 0, version = 0;
  if (value.size() >= 8) {
    std::memcpy(&kind, value.data() + 4, 2);
    std::memcpy(&version, value.data() + 6, 2);
  }
  w->Field("blob_kind", static_cast<int64_t>(kind));
  w->Field("blob_version", static_cast<int64_t>(version));
  w->Field("bytes", static_cast<int64_t>(value.size()));
  w->Field("checksum_ok", state::CheckSealedValue(value).ok());
}

void WritePartition(const state::StateStore& store, state::PartitionKey p, JsonWriter* w) {
  w->Field("topic", store.TopicName(p.topic_id));
  w->Field("partition", static_cast<int64_t>(p.partition));
}

// Decodes one customer's features blob and writes them as a "features"
// object (or an "error" field).
void WriteDecodedFeatures(features::FeatureStore* scratch, std::string_view id,
                          std::string_view blob, JsonWriter* w) {
  const Status st = scratch->DecodeCustomer(id, blob);
  if (!st.ok()) {
    w->Field("error", st.ToString());
    return;
  }
  w->Key("features");
  w->BeginObject();
  features::WriteFeaturesJson(*scratch->Find(id), w);
  w->EndObject();
}

int Show(state::StateStore& store, const StateOptions& o) {
  auto spec = SpecFor(store, o.windows);
  if (!spec.ok()) return Fail("state show", spec.status());
  auto partitions = store.ListPartitions();
  if (!partitions.ok()) return Fail("state show", partitions.status());
  std::string line;
  int found = 0;
  for (const state::PartitionState& ps : *partitions) {
    auto blob = store.GetFeatures(ps.key, o.customer_id);
    if (!blob.ok()) return Fail("state show", blob.status());
    auto model = store.GetCustomerModel(ps.key, o.customer_id);
    if (!model.ok()) return Fail("state show", model.status());
    if (!blob->has_value() && !model->has_value()) continue;
    ++found;
    line.clear();
    JsonWriter w(&line);
    w.BeginObject();
    w.Field("customer_id", o.customer_id);
    WritePartition(store, ps.key, &w);
    w.Field("input_offset", ps.input_offset);
    if (blob->has_value()) {
      auto scratch = features::FeatureStore::Create(*spec);
      if (!scratch.ok()) return Fail("state show", scratch.status());
      WriteDecodedFeatures(scratch->get(), o.customer_id, **blob, &w);
    }
    if (model->has_value()) {
      w.Key("model");
      w.BeginObject();
      WriteBlobSummary(**model, &w);
      w.EndObject();
    }
    w.EndObject();
    std::cout << line << '\n';
  }
  if (found == 0) {
    return Fail("state show", Status::NotFound("customer '" + o.customer_id + "' is not in " +
                                               store.path().string()));
  }
  return 0;
}

int Dump(state::StateStore& store, const StateOptions& o) {
  auto spec = SpecFor(store, o.windows);
  if (!spec.ok()) return Fail("state dump", spec.status());
  std::string line;
  // One scratch FeatureStore per partition keeps memory to one partition.
  std::unique_ptr<features::FeatureStore> scratch;
  state::PartitionKey scratch_partition{UINT32_MAX, -1};
  for (int f = 0; f < state::kStateFamilyCount; ++f) {
    const auto family = static_cast<state::StateFamily>(f);
    const Status st =
        store.ForEachEntry(family, [&](std::string_view key, std::string_view value) -> Status {
          line.clear();
          JsonWriter w(&line);
          w.BeginObject();
          w.Field("family", state::StateFamilyName(family));
          if (family == state::StateFamily::kMetadata) {
            // Metadata keys are text, some followed by a partition prefix.
            const size_t slash = key.find('/');
            const std::string_view head =
                key.substr(0, slash == std::string_view::npos ? key.size() : slash + 1);
            const std::string_view rest = key.substr(head.size());
            if ((head == "changelog/" || head == "restoring/") &&
                rest.size() == state::kPartitionPrefixBytes) {
              w.Field("key", head.substr(0, head.size() - 1));
              auto p = state::DecodePartitionPrefix(rest);
              if (p.ok()) WritePartition(store, *p, &w);
              if (head == "changelog/") {
                auto offset = state::DecodeOffsetValue(value);
                if (offset.ok()) w.Field("changelog_offset", *offset);
              }
            } else {
              w.Field("key", key);
            }
            WriteBlobSummary(value, &w);
          } else {
            CRM_ASSIGN_OR_RETURN(state::PartitionKey p, state::DecodePartitionPrefix(key));
            WritePartition(store, p, &w);
            const std::string_view id = key.substr(state::kPartitionPrefixBytes);
            switch (family) {
              case state::StateFamily::kFeatures:
                w.Field("customer_id", id);
                if (!scratch || !(scratch_partition == p)) {
                  CRM_ASSIGN_OR_RETURN(scratch, features::FeatureStore::Create(*spec));
                  scratch_partition = p;
                }
                WriteDecodedFeatures(scratch.get(), id, value, &w);
                break;
              case state::StateFamily::kModels:
                if (!id.empty() && id[0] == static_cast<char>(state::ModelScope::kLabelDeadline)) {
                  w.Field("scope", std::string_view("label_deadline"));
                  auto d = state::DecodeLabelDeadlineKey(key);
                  if (d.ok()) {
                    w.Field("customer_id", std::string_view(d->customer_id));
                    w.Field("deadline_ms", d->deadline_ms);
                  } else {
                    w.Field("error", d.status().ToString());
                  }
                  break;
                }
                w.Field("scope",
                        !id.empty() && id[0] == static_cast<char>(state::ModelScope::kCustomer)
                            ? "customer"
                            : "partition");
                w.Field("id", id.empty() ? id : id.substr(1));
                WriteBlobSummary(value, &w);
                break;
              case state::StateFamily::kOffsets: {
                auto offset = state::DecodeOffsetValue(value);
                if (offset.ok()) {
                  w.Field("input_offset", *offset);
                } else {
                  w.Field("error", offset.status().ToString());
                }
                break;
              }
              default:
                if (!id.empty()) w.Field("id_hex", Hex(id));
                WriteBlobSummary(value, &w);
                break;
            }
          }
          w.EndObject();
          line.push_back('\n');
          std::cout << line;
          return Status::OK();
        });
    if (!st.ok()) return Fail("state dump", st);
  }
  std::cout.flush();
  return 0;
}

int Verify(state::StateStore& store) {
  auto report = store.Verify();
  if (!report.ok()) return Fail("state verify", report.status());
  for (const std::string& problem : report->problems) std::cout << "bad value: " << problem << '\n';
  std::cout << store.path().string() << ": SST checksums OK; " << report->values_checked
            << " values checked, " << report->bad_values << " bad\n";
  return report->bad_values == 0 ? 0 : 1;
}

int Stats(state::StateStore& store) {
  auto stats = store.Stats();
  if (!stats.ok()) return Fail("state stats", stats.status());
  auto partitions = store.ListPartitions();
  if (!partitions.ok()) return Fail("state stats", partitions.status());
  std::printf("%-10s %12s %14s %14s %14s %6s\n", "family", "keys", "key_bytes", "value_bytes",
              "sst_bytes", "ssts");
  for (const state::FamilyStats& f : stats->families) {
    std::printf("%-10s %12llu %14llu %14llu %14llu %6llu\n", f.name.c_str(),
                static_cast<unsigned long long>(f.keys),
                static_cast<unsigned long long>(f.key_bytes),
                static_cast<unsigned long long>(f.value_bytes),
                static_cast<unsigned long long>(f.sst_file_bytes),
                static_cast<unsigned long long>(f.sst_files));
  }
  std::printf("\n%-24s %5s %12s %14s %10s %12s %14s %10s\n", "topic", "part", "customers",
              "feature_bytes", "models", "input_off", "changelog_off", "restoring");
  std::map<std::pair<std::string, int32_t>, state::PartitionStats> sizes;
  for (const auto& ps : stats->partitions) sizes[{ps.topic, ps.partition}] = ps;
  for (const state::PartitionState& ps : *partitions) {
    const state::PartitionStats& s = sizes[{ps.topic, ps.key.partition}];
    std::printf("%-24s %5d %12llu %14llu %10llu %12lld %14lld %10s\n", ps.topic.c_str(),
                ps.key.partition, static_cast<unsigned long long>(s.customers),
                static_cast<unsigned long long>(s.feature_bytes),
                static_cast<unsigned long long>(s.model_entries),
                static_cast<long long>(ps.input_offset),
                static_cast<long long>(ps.changelog_offset), ps.restoring ? "yes" : "no");
  }
  std::printf("\nblock cache in use: %llu bytes (memtables %llu)\n",
              static_cast<unsigned long long>(stats->block_cache_usage_bytes),
              static_cast<unsigned long long>(stats->memtable_bytes));
  return 0;
}

int RunState(const StateOptions& o) {
  state::StateStoreOptions options;
  options.path = StorePath(o.state_dir);
  options.read_only = true;
  options.memory_cap_bytes = size_t{64} << 20;
  auto store = state::StateStore::Open(options);
  if (!store.ok()) return Fail("state " + o.action, store.status());
  if (o.action == "show") return Show(**store, o);
  if (o.action == "dump") return Dump(**store, o);
  if (o.action == "verify") return Verify(**store);
  return Stats(**store);
}

}  // namespace

void AddStateCommand(CLI::App* app, int* exit_code) {
  auto* cmd = app->add_subcommand(
      "state", "Inspect the local state store (read-only; safe while the engine runs)");
  auto o = std::make_shared<StateOptions>();
  cmd->add_option("--state-dir", o->state_dir,
                  "State directory (the store is DIR/store, or DIR itself)")
      ->capture_default_str();
  cmd->add_option("--windows", o->windows,
                  "Feature windows in days, e.g. 7,30,90 (default: those stored with the state)");
  cmd->require_subcommand(1);
  auto* show = cmd->add_subcommand("show", "One customer's state, features decoded, as JSON");
  show->add_option("customer-id", o->customer_id, "Customer id")->required();
  cmd->add_subcommand("dump", "Every entry as JSON lines, in family and key order");
  cmd->add_subcommand("verify", "RocksDB block checksums and every value's own checksum");
  cmd->add_subcommand("stats", "Sizes and counts per column family and per partition");
  cmd->callback([=] {
    for (const CLI::App* sub : cmd->get_subcommands()) o->action = sub->get_name();
    *exit_code = RunState(*o);
  });
}

}  // namespace crmstream::cli
