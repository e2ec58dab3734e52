// Counts an event once when its event_id repeats: remembers the 64-bit
// hashes (Hash64) of the last `capacity` distinct event ids in a flat
// open-addressing table (linear probing, load <= 2/3) plus a FIFO ring, so
// memory is bounded (20-32 bytes per remembered id, MemoryBytes: 1,000,000
// ids take 24 MiB) and the oldest id is forgotten when a new one arrives at capacity.
//
// The window: a duplicate is recognised when fewer than `capacity` distinct
// new event ids arrived between it and the first occurrence. A repeat does
// not refresh the id's position. Two different ids whose 64-bit hashes
// collide are taken as duplicates: with N remembered ids the chance that a
// new id is wrongly dropped is about N / 2^64 (5e-14 for N = 1e6).
//
// Allocates only at construction, Decode and DecodeChunked; SeenBefore
// allocates nothing.
// Not thread-safe: one window per partition.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "crmstream/common/status.h"

namespace crmstream::ingest {

class DedupWindow {
 public:
  static constexpr size_t kDefaultCapacity = 1'000'000;
  // Largest accepted capacity (also bounds what Decode will allocate).
  static constexpr size_t kMaxCapacity = size_t{1} << 28;
  // Heap bytes of a window of `capacity` ids: its ring and its table.
  static size_t MemoryBytes(size_t capacity);
  // Version of the EncodeTo payload, for the blob envelope the state module
  // seals it in.
  static constexpr uint16_t kEncodingVersion = 1;
  // Version of the chunked encoding (EncodeHead, EncodeChunk): the ring is
  // persisted as fixed chunks of kChunkIds slots plus a small head, so that a
  // checkpoint writes only the chunks the ids since the last one went to.
  static constexpr uint16_t kChunkedEncodingVersion = 2;
  static constexpr size_t kChunkIds = 4096;

  // `capacity` distinct ids are remembered; 0 disables deduplication
  // (SeenBefore is then always false). Capacities above kMaxCapacity are
  // clamped to it.
  explicit DedupWindow(size_t capacity = kDefaultCapacity);

  // True if `event_id` is in the window (a duplicate); otherwise remembers
  // it, forgetting the oldest id if the window is full, and returns false.
  bool SeenBefore(std::string_view event_id);
  // True if `event_id` is in the window; changes nothing.
  bool Contains(std::string_view event_id) const;
  // Fetches the table slot SeenBefore(event_id) will look at into the CPU's
  // cache (the table is far larger than the caches): called an event ahead.
  void Prefetch(std::string_view event_id) const;

  size_t size() const { return size_; }
  size_t capacity() const { return capacity_; }
  // Bytes held by the table and the ring.
  size_t memory_bytes() const;

  // Appends the window (capacity and remembered hashes, oldest first) to
  // `out`, as a payload for SealBlob (version kEncodingVersion).
  void EncodeTo(std::string* out) const;
  // Rebuilds a window of `capacity` (what this run is configured with, not
  // what the payload says, so a corrupt payload cannot make it allocate)
  // from EncodeTo's payload: its newest ids that fit. Corruption if it does
  // not decode.
  static Result<DedupWindow> Decode(std::string_view payload, size_t capacity);

  // The chunked encoding. The ring slot i lives in chunk i / kChunkIds; ids
  // are written to consecutive slots, so the ids remembered since MarkSaved
  // touch one or two chunks unless as many as the capacity arrived.
  size_t chunk_count() const { return (capacity_ + kChunkIds - 1) / kChunkIds; }
  // Calls f(chunk) for each chunk holding an id remembered since MarkSaved
  // (every chunk after MarkAllUnsaved or once `capacity` ids arrived).
  void ForEachUnsavedChunk(const std::function<void(size_t chunk)>& f) const;
  bool all_unsaved() const { return capacity_ != 0 && unsaved_ >= capacity_; }
  // Calls f(chunk) for each chunk the store still holds past this window's
  // last (a window decoded at a smaller capacity than it was saved with),
  // until MarkSaved: the checkpoint that writes the smaller window deletes
  // them.
  void ForEachStaleChunk(const std::function<void(size_t chunk)>& f) const;
  // The encoded head and chunks are saved: later ids are the next ones.
  void MarkSaved();
  // Everything is to be saved again (a window decoded from EncodeTo's
  // payload, whose store holds no chunks).
  void MarkAllUnsaved() { unsaved_ = capacity_; }
  // Appends the head (capacity, ring position, size, chunk length) to `out`.
  void EncodeHead(std::string* out) const;
  // Appends the chunk's ring slots (unused ones are 0) to `out`.
  void EncodeChunk(size_t chunk, std::string* out) const;
  // Rebuilds a window of `capacity` from a head and its chunks (`chunk`
  // returns a chunk's payload, and an error when it is missing). At the
  // saved capacity: the same ids in the same ring slots, so it forgets them
  // in the same order and the saved chunks stay current. At another: the
  // newest ids that fit, all chunks to be saved again. Corruption if they
  // do not decode.
  using ChunkSource = std::function<Result<std::string>(size_t chunk)>;
  static Result<DedupWindow> DecodeChunked(std::string_view head, const ChunkSource& chunk,
                                           size_t capacity);

 private:
  // How many events ahead SeenBefore fetches the table slot it will erase.
  static constexpr size_t kEraseLookahead = 8;

  bool ContainsHash(uint64_t h) const;
  // Appends a decoded id to a window being rebuilt (not full, head 0).
  Status Remember(uint64_t h);
  void InsertHash(uint64_t h);
  void EraseHash(uint64_t h);
  static uint64_t HashId(std::string_view event_id);
  // The ring slot the next id goes to.
  size_t cursor() const;

  size_t capacity_ = 0;
  size_t size_ = 0;
  size_t head_ = 0;              // ring index of the oldest hash
  uint64_t mask_ = 0;            // table size - 1 (table size is a power of two)
  std::vector<uint64_t> table_;  // 0 marks an empty slot
  std::vector<uint64_t> ring_;   // hashes in arrival order, circular
  // Ids remembered since MarkSaved, from ring slot saved_cursor_ on.
  uint64_t unsaved_ = 0;
  size_t saved_cursor_ = 0;
  // The saved window's chunk count, when larger than chunk_count().
  size_t stale_chunks_end_ = 0;
};

}  // namespace crmstream::ingest
