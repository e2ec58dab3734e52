#include "crmstream/generator/world_generator.h"

#include <cstdio>

#include "generator/world_state.h"

namespace crmstream::generator {

Result<std::unique_ptr<WorldGenerator>> WorldGenerator::Create(WorldOptions options) {
  CRM_RETURN_NOT_OK(options.Validate());
  return std::unique_ptr<WorldGenerator>(
      new WorldGenerator(std::make_unique<WorldState>(std::move(options))));
}

WorldGenerator::WorldGenerator(std::unique_ptr<WorldState> state) : state_(std::move(state)) {}

WorldGenerator::~WorldGenerator() = default;

int64_t WorldGenerator::Next(std::string* key, std::string* value) {
  return state_->Next(key, value);
}
int64_t WorldGenerator::now_ms() const { return state_->now_ms(); }
const WorldOptions& WorldGenerator::options() const { return state_->options(); }
const GroundTruth& WorldGenerator::ground_truth() const { return state_->ground_truth(); }
std::vector<ChurnerTruth> WorldGenerator::FadingCustomers() const {
  return state_->FadingCustomers();
}
std::vector<CustomerTruth> WorldGenerator::Customers() const { return state_->Customers(); }

void WorldGenerator::SetGroundTruthSink(std::function<void(std::string_view)> sink) {
  state_->SetGroundTruthSink(std::move(sink));
}

void WorldGenerator::GroundTruthJson(std::string* out) const { state_->GroundTruthJson(out); }

Status WorldGenerator::WriteGroundTruth(const std::string& path) const {
  std::string json;
  GroundTruthJson(&json);
  json.push_back('\n');
  // Write beside, then rename: a reader never sees half a document.
  const std::string tmp = path + ".tmp";
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (f == nullptr) return Status::IOError("cannot open " + tmp + " for writing");
  const bool written = std::fwrite(json.data(), 1, json.size(), f) == json.size();
  const bool closed = std::fclose(f) == 0;
  if (!written || !closed) {
    std::remove(tmp.c_str());
    return Status::IOError("cannot write ground truth to " + tmp);
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    return Status::IOError("cannot rename " + tmp + " to " + path);
  }
  return Status::OK();
}

}  // namespace crmstream::generator
