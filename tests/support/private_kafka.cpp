#include "support/private_kafka.h"

#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <vector>

#include "crmstream/kafka/handles.h"

namespace crmstream::testing {
namespace {

namespace fs = std::filesystem;

std::string Env(const char* name) {
  const char* value = std::getenv(name);
  return value != nullptr ? std::string(value) : std::string();
}

// Where scripts/kafka.sh keeps its jars and instances.
fs::path KafkaHome() {
  const std::string home = Env("CRMSTREAM_BROKER_HOME");
  return home.empty() ? SourceDir() / ".cache" / "kafka" : fs::path(home);
}

std::string LastLines(const std::string& text, int lines) {
  size_t pos = text.size();
  while (lines-- > 0 && pos > 0) {
    pos = text.rfind('\n', pos - 1);
    if (pos == std::string::npos) return text;
  }
  return text.substr(pos);
}

}  // namespace

PrivateKafka::PrivateKafka(int nodes)
    : instance_("test-" + std::to_string(::getpid())),
      log_(fs::temp_directory_path() / ("crmstream-kafka-" + instance_ + ".log")) {
  const std::string version =
      Env("CRMSTREAM_BROKER_VERSION").empty() ? "3.9.2" : Env("CRMSTREAM_BROKER_VERSION");
  const fs::path jars = KafkaHome() / ("kafka_2.13-" + version) / ".complete";
  if (std::system("command -v java > /dev/null 2>&1") != 0 || !fs::exists(jars)) {
    unavailable_reason_ = "no Java or no cached Kafka " + version + " in " + KafkaHome().string() +
                          ": run `scripts/kafka.sh start` once";
    return;
  }
  RemoveAbandoned();
  Status started = Script({"start", "--brokers", std::to_string(nodes)});
  if (!started.ok()) {
    unavailable_reason_ = "a private Kafka cluster did not start: " + started.ToString();
    (void)Script({"remove"});
    return;
  }
  const fs::path run = KafkaHome() / ("run-" + instance_);
  bootstrap_ = ReadWholeFile(run / "bootstrap");
  while (!bootstrap_.empty() && bootstrap_.back() == '\n') bootstrap_.pop_back();
  broker_count_ = nodes;
  suffix_ = "-" + instance_;
}

PrivateKafka::~PrivateKafka() {
  if (!bootstrap_.empty()) (void)Script({"remove"});
  std::error_code ignored;
  fs::remove(log_, ignored);
}

// A test process killed by a timeout leaves its cluster running: one whose
// process is gone is stopped and deleted here.
void PrivateKafka::RemoveAbandoned() const {
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(KafkaHome(), ec)) {
    const std::string name = entry.path().filename().string();
    static constexpr std::string_view kPrefix = "run-test-";
    if (!name.starts_with(kPrefix)) continue;
    const int pid = std::atoi(name.c_str() + kPrefix.size());
    if (pid <= 0 || ::kill(pid, 0) == 0 || errno != ESRCH) continue;
    const std::vector<std::string> argv{(SourceDir() / "scripts" / "kafka.sh").string(),
                                        "--instance", name.substr(4), "remove"};
    (void)RunChild(argv, {}, log_, std::chrono::seconds(120));
  }
}

Status PrivateKafka::Script(const std::vector<std::string>& args, std::string* output) const {
  std::vector<std::string> argv{(SourceDir() / "scripts" / "kafka.sh").string(), "--instance",
                                instance_};
  argv.insert(argv.end(), args.begin(), args.end());
  const size_t before = ReadWholeFile(log_).size();
  // kafka.sh bounds its own waits; this bound only catches a hung script.
  const ChildExit exit = RunChild(argv, {}, log_, std::chrono::seconds(180));
  const std::string said = ReadWholeFile(log_).substr(before);
  if (output != nullptr) *output = said;
  if (exit.exited(0)) return Status::OK();
  std::string command;
  for (const auto& a : args) command += " " + a;
  return Status::IOError("kafka.sh" + command + " failed: " + LastLines(said, 8));
}

Status PrivateKafka::StopNode(int id) { return Script({"stop-node", std::to_string(id)}); }
// The signal at once (the fault's moment matters), then the script's wait
// for the exit.
Status PrivateKafka::KillNode(int id) {
  if (Status st = Signal(id, SIGKILL); !st.ok()) return st;
  return Script({"kill-node", std::to_string(id)});
}
Status PrivateKafka::StartNode(int id) { return Script({"start-node", std::to_string(id)}); }
Status PrivateKafka::PauseNode(int id) { return Signal(id, SIGSTOP); }
Status PrivateKafka::ResumeNode(int id) { return Signal(id, SIGCONT); }

Status PrivateKafka::Signal(int id, int signal) const {
  const std::string pid_text =
      ReadWholeFile(KafkaHome() / ("run-" + instance_) / ("node-" + std::to_string(id)) / "pid");
  const int pid = std::atoi(pid_text.c_str());
  if (pid <= 0) return Status::NotFound("node " + std::to_string(id) + " is not running");
  if (::kill(pid, signal) != 0) {
    return Status::IOError("signal to node " + std::to_string(id) + " failed");
  }
  return Status::OK();
}

Result<int> PrivateKafka::Leader(const std::string& topic, int32_t partition) const {
  auto conf = config().BuildConf();
  if (!conf.ok()) return conf.status();
  char error[256];
  kafka::KafkaHandle rk(rd_kafka_new(RD_KAFKA_PRODUCER, conf->release(), error, sizeof(error)));
  if (!rk) return Status::IOError(std::string("metadata client: ") + error);
  kafka::TopicHandle rkt(rd_kafka_topic_new(rk.get(), topic.c_str(), nullptr));
  const rd_kafka_metadata_t* raw = nullptr;
  const rd_kafka_resp_err_t err = rd_kafka_metadata(rk.get(), 0, rkt.get(), &raw, 10000);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return Status::IOError("metadata of " + topic + ": " + rd_kafka_err2str(err));
  }
  std::unique_ptr<const rd_kafka_metadata_t, kafka::MetadataDeleter> metadata(raw);
  for (int t = 0; t < metadata->topic_cnt; ++t) {
    const rd_kafka_metadata_topic_t& mt = metadata->topics[t];
    for (int p = 0; p < mt.partition_cnt; ++p) {
      if (mt.partitions[p].id == partition && mt.partitions[p].leader >= 0) {
        return static_cast<int>(mt.partitions[p].leader);
      }
    }
  }
  return Status::NotFound("no leader known for " + topic + "/" + std::to_string(partition));
}

}  // namespace crmstream::testing
