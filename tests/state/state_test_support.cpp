#include "state/state_test_support.h"

#include <sys/mount.h>
#include <unistd.h>

#include <array>
#include <catch2/catch.hpp>
#include <fstream>
#include <random>
#include <sstream>

#include "crmstream/ingest/event.h"

namespace crmstream::state::testing {
namespace fs = std::filesystem;

namespace {
constexpr int64_t kDayMs = 86'400'000;
constexpr int64_t kStartMs = 1'700'000'000'000;  // 2023-11-14
}  // namespace

std::string CustomerId(int i) { return "cust-" + std::to_string(i); }

std::unique_ptr<features::FeatureStore> MakeFeatureStore(int customers, int days, uint64_t seed) {
  // The default spec is valid.
  std::unique_ptr<features::FeatureStore> store =
      std::move(features::FeatureStore::Create(features::FeatureSpec{})).value();
  std::mt19937_64 rng(seed);
  const std::array<ingest::EventType, 5> types{
      ingest::EventType::kPurchase, ingest::EventType::kLogin, ingest::EventType::kPageView,
      ingest::EventType::kSupportTicket, ingest::EventType::kRefund};
  std::string id;
  std::string event_id;
  for (int i = 0; i < customers; ++i) {
    id = CustomerId(i);
    const int events = 3 + static_cast<int>(rng() % 6);
    for (int k = 0; k < events; ++k) {
      event_id = id + "-" + std::to_string(k);
      ingest::Event e;
      e.event_id = event_id;
      e.customer_id = id;
      e.type = types[rng() % types.size()];
      e.timestamp_ms = kStartMs +
                       static_cast<int64_t>(rng() % static_cast<uint64_t>(days)) * kDayMs +
                       static_cast<int64_t>(rng() % 1000);
      if (ingest::EventTypeHasAmount(e.type)) {
        e.amount = static_cast<double>(rng() % 20000) / 100.0;
        e.has_amount = true;
      }
      store->Update(e);
    }
  }
  return store;
}

void TouchCustomer(features::FeatureStore* store, int i, int64_t at_ms, double amount) {
  const std::string id = CustomerId(i);
  const std::string event_id = id + "-touch-" + std::to_string(at_ms);
  ingest::Event e;
  e.event_id = event_id;
  e.customer_id = id;
  e.type = ingest::EventType::kPurchase;
  e.timestamp_ms = at_ms;
  e.amount = amount;
  e.has_amount = true;
  store->Update(e);
}

std::string ReadFileBytes(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

void WriteFileBytes(const fs::path& file, const std::string& bytes) {
  std::ofstream out(file, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

void FlipBytes(const fs::path& file, size_t offset, size_t count) {
  std::string bytes = ReadFileBytes(file);
  REQUIRE(offset + count <= bytes.size());
  for (size_t i = offset; i < offset + count; ++i) bytes[i] = static_cast<char>(~bytes[i]);
  WriteFileBytes(file, bytes);
}

std::map<std::string, std::string> SnapshotFiles(const fs::path& dir) {
  std::map<std::string, std::string> out;
  for (const auto& entry : fs::recursive_directory_iterator(dir)) {
    if (entry.is_regular_file()) {
      out[fs::relative(entry.path(), dir).string()] = ReadFileBytes(entry.path());
    }
  }
  return out;
}

std::unique_ptr<TmpfsMount> TmpfsMount::Mount(size_t bytes) {
  if (geteuid() != 0) return nullptr;
  fs::path dir = fs::temp_directory_path() / ("crmstream-tmpfs-" + std::to_string(getpid()) + "-" +
                                              std::to_string(std::random_device{}()));
  fs::create_directories(dir);
  const std::string data = "size=" + std::to_string(bytes);
  if (mount("tmpfs", dir.c_str(), "tmpfs", 0, data.c_str()) != 0) {
    fs::remove(dir);
    return nullptr;
  }
  return std::unique_ptr<TmpfsMount>(new TmpfsMount(dir));
}

bool TmpfsMount::RemountReadOnly() {
  return mount("tmpfs", path_.c_str(), "tmpfs", MS_REMOUNT | MS_RDONLY, nullptr) == 0;
}

TmpfsMount::~TmpfsMount() {
  if (umount(path_.c_str()) != 0) umount2(path_.c_str(), MNT_DETACH);
  std::error_code ec;
  fs::remove(path_, ec);
}

}  // namespace crmstream::state::testing
