// Kafka properties from a file, the environment and -X arguments: values
// arrive unchanged, an unsafe file is refused, and no error shows a value.
#include "crmstream/config/kafka_properties.h"

#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <fstream>

#include "support/require_ok.h"
#include "support/test_support.h"

namespace crmstream::config {
namespace {

TEST_CASE("a properties file is read only when its owner alone can read it", "[config]") {
  testing::ScratchDir dir;
  const auto path = (dir.path() / "kafka.properties").string();
  std::ofstream(path) << "# credentials\n"
                         "security.protocol=SASL_SSL\n"
                         "\n"
                         "  sasl.username = crmstream \n"
                         "sasl.password=p=ss#w0rd\n";
  ::chmod(path.c_str(), 0640);
  KafkaProperties props{{"sasl.username", "from-config"}};
  Status st = ReadKafkaPropertiesFile(path, &props);
  REQUIRE_FALSE(st.ok());
  CHECK(st.message().find("--kafka-properties") != std::string::npos);
  CHECK(st.message().find("0640") != std::string::npos);
  CHECK(st.message().find("chmod 600") != std::string::npos);
  CHECK(props.at("sasl.username") == "from-config");

  ::chmod(path.c_str(), 0600);
  REQUIRE_OK(ReadKafkaPropertiesFile(path, &props));
  CHECK(props.at("security.protocol") == "SASL_SSL");
  CHECK(props.at("sasl.username") == "crmstream");
  CHECK(props.at("sasl.password") == "p=ss#w0rd");

  // A broken line is located, never shown.
  std::ofstream(path) << "ok=1\nhunter2-the-password\n";
  st = ReadKafkaPropertiesFile(path, &props);
  REQUIRE_FALSE(st.ok());
  CHECK(st.message().find(path + ":2") != std::string::npos);
  CHECK(st.message().find("hunter2") == std::string::npos);
}

TEST_CASE("CRMSTREAM_KAFKA_* variables become properties", "[config]") {
  const char* env[] = {"PATH=/usr/bin",
                       "CRMSTREAM_KAFKA_SASL_PASSWORD=s3cret=x",
                       "CRMSTREAM_KAFKA_BOOTSTRAP_SERVERS=k1:9092,k2:9092",
                       "CRMSTREAM_KAFKA_=ignored",
                       "CRMSTREAM_KAFKAX=ignored",
                       nullptr};
  KafkaProperties props{{"sasl.password", "from-file"}};
  ReadKafkaPropertiesFromEnvironment(env, &props);
  CHECK(props.size() == 2);
  CHECK(props.at("sasl.password") == "s3cret=x");
  CHECK(props.at("bootstrap.servers") == "k1:9092,k2:9092");
}

TEST_CASE("a malformed -X argument is reported without its text", "[config]") {
  KafkaProperties props;
  REQUIRE_OK(ParseKafkaPropertyArgument("sasl.password=a=b", 1, &props));
  CHECK(props.at("sasl.password") == "a=b");
  for (std::string_view bad : {"sasl.password:hunter2", "=hunter2", "hunter2"}) {
    Status st = ParseKafkaPropertyArgument(bad, 3, &props);
    REQUIRE_FALSE(st.ok());
    CHECK(st.message().find("-X argument 3") != std::string::npos);
    CHECK(st.message().find("hunter2") == std::string::npos);
  }
}

}  // namespace
}  // namespace crmstream::config
