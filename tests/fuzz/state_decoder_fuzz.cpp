// libFuzzer target for the checkpoint codecs of a partition task, the bytes
// a restore reads back from the state store: a customer's features
// (FeatureStore::DecodeCustomer) and model record (CustomerModels::
// DecodeCustomer), the scoring parts' partition blobs (DecodePartition:
// churn, segments, behaviour), the minute metrics (MinuteMetricsMonitor::
// Decode), the processor's schedules (EventProcessor::DecodeState) and the
// dedup window (DedupWindow::Decode, and DecodeChunked: a head and its
// chunks). None may crash, read out of bounds or
// hit UB; whatever one accepts must encode again to bytes that decode to the
// same encoding, and the processor must go on processing events after it.
//
// Input: byte 0 picks the decoder (modulo kDecoders); bit 0 of byte 1 says
// whether the rest is a whole blob (0) or a bare payload (1) that the target
// seals with the decoder's kind and current version, so that mutations get
// past the checksum; the rest is the bytes. Each input gets a fresh
// processor that has already seen one event of the customer decoded into.
//
// CRMSTREAM_WRITE_STATE_SEEDS=DIR: at start-up, writes one valid input per
// decoder (whole blob and bare payload) into DIR, the seed corpus.
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>
#include <string_view>

#include "crmstream/common/binary_io.h"
#include "crmstream/ingest/dedup_window.h"
#include "crmstream/pipeline/event_processor.h"

namespace {

using crmstream::BlobKind;
using crmstream::Status;
using crmstream::pipeline::EventProcessor;
using crmstream::pipeline::OutputKind;
using crmstream::pipeline::OutputSink;

constexpr int kDecoders = 9;
constexpr const char* kNames[kDecoders] = {"features",  "customer_models", "churn",
                                           "segments",  "behaviour",       "minute_metrics",
                                           "processor", "dedup",           "dedup_chunks"};
constexpr int kDedup = 7;
constexpr int kDedupChunks = 8;
// The dedup window's encodings are bare payloads (no envelope).
constexpr bool BareOnly(int d) { return d == kDedup || d == kDedupChunks; }
constexpr std::string_view kCustomer = "fuzz-customer";
// The processors' configured window: a decoded one has this capacity
// whatever its bytes say, as in a restore.
constexpr size_t kDedupCapacity = 64;

[[noreturn]] void Fail(const char* what) {
  (void)what;  // visible in the debugger and the crash's stack
  std::abort();
}

class NullSink final : public OutputSink {
 public:
  void Emit(OutputKind, std::string_view, std::string_view) override {}
};

std::string EventJson(int n, int64_t ts) {
  return R"({"event_id":"e)" + std::to_string(n) + R"(","customer_id":"fuzz-customer",)" +
         R"("timestamp":)" + std::to_string(ts) + R"(,"type":"purchase","amount":5})";
}

constexpr int64_t kStart = 1'772'366'400'000;  // 2026-03-01T12:00:00Z

// A processor that has seen `events` events of the customer.
std::unique_ptr<EventProcessor> NewProcessor(OutputSink* sink, int events) {
  crmstream::pipeline::ProcessorOptions options;
  options.dedup_capacity = kDedupCapacity;
  // A restored clock far from the events below would feed up to this many
  // empty minutes to the minute models: kept small for speed.
  options.minute_metrics.max_empty_minutes = 4;
  auto p = EventProcessor::Create(options, sink);
  if (!p.ok()) Fail("processor options");
  for (int i = 0; i < events; ++i) {
    (void)(*p)->Process(EventJson(i, kStart + i * 3'600'000), {"fuzz", 0, i}, kStart);
  }
  (*p)->FlushOutputs();
  return std::move(*p);
}

// The decoder's current encoding in `p` (the kind of blob it reads; the
// dedup window's is a bare payload).
Status Encode(EventProcessor& p, int d, std::string* out) {
  out->clear();
  switch (d) {
    case 0:
      return p.feature_store().EncodeCustomer(kCustomer, out);
    case 1: {
      const auto* f = p.feature_store().Find(kCustomer);
      if (f == nullptr) return Status::NotFound("customer");
      return p.customer_models().EncodeCustomer(*f, out);
    }
    case 2:
    case 3:
    case 4:
      return p.customer_models().EncodePartition(kNames[d], out);
    case 5:
      p.minute_metrics().Encode(out);
      return Status::OK();
    case 6:
      p.EncodeState(7, out);
      return Status::OK();
    case kDedup:
      p.dedup_window().EncodeTo(out);
      return Status::OK();
    default:
      // The head, then every chunk (what a store holds after a full save).
      p.dedup_window().EncodeHead(out);
      for (size_t c = 0; c < p.dedup_window().chunk_count(); ++c) {
        p.dedup_window().EncodeChunk(c, out);
      }
      return Status::OK();
  }
}

Status Decode(EventProcessor& p, int d, std::string_view bytes) {
  switch (d) {
    case 0:
      return p.feature_store().DecodeCustomer(kCustomer, bytes);
    case 1: {
      const auto* f = p.feature_store().Find(kCustomer);
      if (f == nullptr) Fail("the customer is gone");
      const crmstream::features::CustomerFeatures customer = *f;
      return p.customer_models().DecodeCustomer(customer, bytes);
    }
    case 2:
    case 3:
    case 4:
      return p.customer_models().DecodePartition(kNames[d], bytes);
    case 5:
      return p.minute_metrics().Decode(bytes);
    case 6:
      return p.DecodeState(bytes).status();
    case kDedup: {
      auto window = crmstream::ingest::DedupWindow::Decode(bytes, kDedupCapacity);
      if (!window.ok()) return window.status();
      p.set_dedup_window(std::move(*window));
      return Status::OK();
    }
    default: {
      // The head's fixed 28 bytes, then the chunks one after another, each
      // a u32 count and its hashes.
      constexpr size_t kHeadBytes = 28;
      if (bytes.size() < kHeadBytes) return Status::Corruption("short head");
      size_t pos = kHeadBytes;
      auto window = crmstream::ingest::DedupWindow::DecodeChunked(
          bytes.substr(0, kHeadBytes),
          [&](size_t) -> crmstream::Result<std::string> {
            crmstream::BinaryReader r(bytes.substr(pos));
            uint32_t n = 0;
            CRM_RETURN_NOT_OK(r.Get(&n));
            const size_t length = 4 + size_t{n} * 8;
            if (bytes.size() - pos < length) return Status::Corruption("short chunk");
            std::string chunk(bytes.substr(pos, length));
            pos += length;
            return chunk;
          },
          kDedupCapacity);
      if (!window.ok()) return window.status();
      p.set_dedup_window(std::move(*window));
      return Status::OK();
    }
  }
}

constexpr BlobKind KindOf(int d) {
  constexpr BlobKind kinds[kDecoders] = {BlobKind::kCustomerFeatures,
                                         BlobKind::kCustomerModelState,
                                         BlobKind::kChurnPartitionState,
                                         BlobKind::kSegmentPartitionState,
                                         BlobKind::kBehaviourPartitionState,
                                         BlobKind::kMinuteMetricsState,
                                         BlobKind::kProcessorState,
                                         BlobKind::kDedupWindow,
                                         BlobKind::kDedupWindow};
  return kinds[d];
}

// The current format version of decoder d's blobs, read from a real one.
uint16_t VersionOf(int d) {
  static const auto versions = [] {
    NullSink sink;
    auto p = NewProcessor(&sink, 3);
    std::array<uint16_t, kDecoders> v{};
    std::string blob;
    for (int i = 0; i < kDecoders; ++i) {
      if (BareOnly(i)) continue;
      if (!Encode(*p, i, &blob).ok()) Fail("reference encoding");
      auto opened = crmstream::OpenBlob(blob, KindOf(i));
      if (!opened.ok()) Fail("reference blob does not open");
      v[static_cast<size_t>(i)] = opened->version;
    }
    return v;
  }();
  return versions[static_cast<size_t>(d)];
}

void WriteSeeds(const char* dir) {
  NullSink sink;
  auto p = NewProcessor(&sink, 3);
  std::string blob;
  for (int d = 0; d < kDecoders; ++d) {
    if (!Encode(*p, d, &blob).ok()) Fail("seed encoding");
    const bool bare_only = BareOnly(d);
    for (int bare = bare_only ? 1 : 0; bare < 2; ++bare) {
      std::string input{static_cast<char>(d), static_cast<char>(bare)};
      if (bare) {
        auto opened = crmstream::OpenBlob(blob, KindOf(d));
        input.append(bare_only ? std::string_view(blob) : opened->payload);
      } else {
        input.append(blob);
      }
      std::ofstream(std::string(dir) + "/" + kNames[d] + (bare ? "-payload" : "-blob") + ".bin",
                    std::ios::binary)
          << input;
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  if (const char* dir = std::getenv("CRMSTREAM_WRITE_STATE_SEEDS")) WriteSeeds(dir);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const int d = data[0] % kDecoders;
  const bool bare = (data[1] & 1) != 0;
  std::string_view bytes(reinterpret_cast<const char*>(data) + 2, size - 2);
  std::string sealed;
  if (bare && !BareOnly(d)) {
    sealed = crmstream::SealBlob(KindOf(d), VersionOf(d), bytes);
    bytes = sealed;
  }
  // Building a processor costs far more than a decode (its models' tables),
  // so one is kept for decodes that fail: a decoder that rejects its input
  // leaves the object unchanged (its contract), so no input leaves a trace
  // for the next one and every crash replays from its input alone. A
  // processor that accepted state is replaced.
  static NullSink sink;
  static std::unique_ptr<EventProcessor> probe;
  if (!probe) probe = NewProcessor(&sink, 1);
  if (!Decode(*probe, d, bytes).ok()) return 0;
  const std::unique_ptr<EventProcessor> p = std::move(probe);

  // Accepted: the encoding decodes again, to the same encoding.
  std::string again, twice;
  if (!Encode(*p, d, &again).ok()) Fail("accepted state does not encode");
  auto q = NewProcessor(&sink, 1);
  if (!Decode(*q, d, again).ok()) Fail("re-encoded state does not decode");
  if (!Encode(*q, d, &twice).ok() || twice != again) Fail("round trip changed the bytes");
  // And the partition goes on: events before, at and after the restored
  // clocks, a refresh and a flush.
  for (int i = 0; i < 3; ++i) {
    // now_ms 0: no clock, so the far ones are not refused as future.
    (void)p->Process(EventJson(100 + i, kStart + (i - 1) * 40 * 86'400'000LL), {"fuzz", 0, i}, 0);
  }
  p->FlushOutputs();
  return 0;
}
