// `crmstream generate`: the synthetic CRM world to a topic or a JSON-lines
// file, deterministic for a seed, optionally with its ground truth.
#include <fstream>
#include <iostream>

#include "cli_support.h"
#include "cluster_topics.h"
#include "commands.h"
#include "crmstream/kafka/producer.h"
#include "crmstream/runtime/kafka_wiring.h"
#include "generator_runner.h"

namespace crmstream::cli {
namespace {

struct GenerateOptions {
  KafkaCliOptions kafka;
  std::string out_file;
  std::string topic = "crm.interactions";
  std::string ground_truth;
  GeneratorPace pace;
  generator::WorldOptions world;
};

int RunGenerate(const GenerateOptions& o) {
  InstallStopHandlers();
  if (Status st = o.world.Validate(); !st.ok()) return Fail("generate", st);
  auto world = generator::WorldGenerator::Create(o.world);
  if (!world.ok()) return Fail("generate", world.status());

  Result<uint64_t> written = uint64_t{0};
  if (!o.out_file.empty()) {
    std::ofstream out(o.out_file, std::ios::binary | std::ios::trunc);
    if (!out) return Fail("generate", Status::IOError(o.out_file + ": cannot open for writing"));
    written = RunGenerator(
        world->get(), o.pace,
        [&](std::string_view, std::string_view value) {
          out.write(value.data(), static_cast<std::streamsize>(value.size()));
          out.put('\n');
          return out ? Status::OK() : Status::IOError(o.out_file + ": write failed");
        },
        StopRequested());
  } else {
    auto cfg = o.kafka.Load();
    if (!cfg.ok()) return Fail("generate", cfg.status());
    if (cfg->kafka.embedded()) {
      return Fail("generate", Status::InvalidArgument(
                                  "no Kafka to write to: give --out FILE, --bootstrap-servers or "
                                  "--broker-file state/broker.addr"));
    }
    // The topic with the partition count of the input of that name (else of
    // the first input), unless it exists.
    int partitions = cfg->inputs.empty() ? 1 : cfg->inputs.front().partitions;
    for (const auto& t : cfg->inputs) {
      if (t.name == o.topic) partitions = t.partitions;
    }
    const std::vector<kafka::TopicSpec> topic{{o.topic, partitions, -1}};
    if (Status st = EnsureClusterTopics(*cfg, topic); !st.ok()) return Fail("generate", st);
    auto producer = kafka::Producer::Create(runtime::MakeClientConfig(cfg->kafka));
    if (!producer.ok()) return Fail("generate", producer.status());
    kafka::Producer* p = producer->get();
    written = RunGenerator(
        world->get(), o.pace,
        [&](std::string_view key, std::string_view value) {
          Status st = p->Produce(o.topic, kafka::kPartitionUnassigned, key, value);
          p->Poll();
          return st;
        },
        StopRequested());
    if (Status st = p->Flush(std::chrono::seconds(60)); !st.ok()) return Fail("generate", st);
    if (p->failed_count() > 0) return Fail("generate", p->last_delivery_error());
  }
  if (!written.ok()) return Fail("generate", written.status());
  if (!o.ground_truth.empty()) {
    if (Status st = (*world)->WriteGroundTruth(o.ground_truth); !st.ok()) {
      return Fail("generate", st);
    }
  }
  std::cerr << "generated " << *written << " events" << std::endl;
  return 0;
}

}  // namespace

void AddGenerateCommand(CLI::App* app, int* exit_code) {
  auto* cmd = app->add_subcommand("generate",
                                  "Generate the synthetic CRM world to a topic or JSON-lines file");
  auto o = std::make_shared<GenerateOptions>();
  o->kafka.AddTo(cmd);
  cmd->add_option("-o,--out", o->out_file, "Write JSON lines to this file instead of Kafka");
  cmd->add_option("-t,--topic", o->topic, "Topic to produce to")->capture_default_str();
  cmd->add_option("--ground-truth", o->ground_truth,
                  "Write the ground truth (churners, anomalies, bad records) to this JSON file");
  cmd->add_option("-r,--rate", o->pace.events_per_second, "Events per second (0: max)")
      ->capture_default_str();
  cmd->add_option("-n,--count", o->pace.max_events, "Stop after this many events (0: no limit)")
      ->capture_default_str();
  cmd->add_option("--duration", o->pace.max_seconds, "Stop after this many seconds (0: no limit)");
  cmd->add_option("--seed", o->world.seed, "Random seed")->capture_default_str();
  cmd->add_option("--customers", o->world.customers, "Number of customers")->capture_default_str();
  cmd->add_option("--first-customer", o->world.first_customer_number,
                  "The first customer's number (ids C00000001...; another range is another "
                  "population)")
      ->capture_default_str();
  cmd->add_option("--start-ms", o->world.start_ms, "Simulated start time, epoch ms")
      ->capture_default_str();
  cmd->add_option("--churn-rate", o->world.churn_rate, "Churn rate (see docs/generator.md)")
      ->capture_default_str();
  cmd->add_flag("--anomalies", o->world.anomalies.enabled, "Inject anomalies");
  cmd->add_option("--malformed-rate", o->world.malformed_rate,
                  "Fraction of malformed records (dead-letter testing)");
  cmd->add_option("--duplicate-rate", o->world.duplicate_rate,
                  "Fraction of re-sent duplicate records");
  cmd->add_flag("--iso-timestamps", o->world.iso_timestamps, "ISO-8601 timestamps");
  cmd->callback([=] { *exit_code = RunGenerate(*o); });
}

}  // namespace crmstream::cli
