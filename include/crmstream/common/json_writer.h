// A minimal streaming JSON writer for output records (scores, alerts, dead
// letters). Appends to a caller-owned string that is reused across records,
// so the hot path does not allocate once the buffer has grown. Commas are
// inserted automatically. Not thread-safe.
#pragma once

#include <charconv>
#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>

namespace crmstream {

class JsonWriter {
 public:
  explicit JsonWriter(std::string* out) : out_(out) {}

  void BeginObject() { Open('{'); }
  void EndObject() { Close('}'); }
  void BeginArray() { Open('['); }
  void EndArray() { Close(']'); }
  // An object key; the next value call writes its value.
  void Key(std::string_view key) {
    Separate();
    AppendString(key);
    out_->push_back(':');
    after_key_ = true;
  }
  void String(std::string_view s) {
    Separate();
    AppendString(s);
  }
  void Int(int64_t v) {
    Separate();
    char buf[24];
    auto r = std::to_chars(buf, buf + sizeof(buf), v);
    out_->append(buf, r.ptr);
  }
  // Shortest round-trip form; non-finite values become null (JSON has none).
  void Double(double v) {
    Separate();
    if (!std::isfinite(v)) {
      out_->append("null");
      return;
    }
    char buf[32];
    auto r = std::to_chars(buf, buf + sizeof(buf), v);
    out_->append(buf, r.ptr);
  }
  void Bool(bool v) {
    Separate();
    out_->append(v ? "true" : "false");
  }
  void Null() {
    Separate();
    out_->append("null");
  }
  // Already-encoded JSON (e.g. an event's `attributes` object).
  void Raw(std::string_view json) {
    Separate();
    out_->append(json);
  }

  template <typename T>
  void Field(std::string_view key, T v) {
    Key(key);
    if constexpr (std::is_same_v<T, bool>) {
      Bool(v);
    } else if constexpr (std::is_integral_v<T>) {
      Int(static_cast<int64_t>(v));
    } else if constexpr (std::is_floating_point_v<T>) {
      Double(static_cast<double>(v));
    } else {
      String(std::string_view(v));
    }
  }

  // Appends `s` as a quoted JSON string with RFC 8259 escapes; bytes that are
  // not valid UTF-8 are passed through (callers that need strict UTF-8, like
  // the dead-letter encoder, check first).
  static void AppendString(std::string* out, std::string_view s);

 private:
  void AppendString(std::string_view s) { AppendString(out_, s); }
  void Separate() {
    if (after_key_) {
      after_key_ = false;
      return;
    }
    if (need_comma_) out_->push_back(',');
    need_comma_ = true;
  }
  void Open(char c) {
    Separate();
    out_->push_back(c);
    need_comma_ = false;
  }
  void Close(char c) {
    out_->push_back(c);
    need_comma_ = true;
  }

  std::string* out_;
  bool need_comma_ = false;
  bool after_key_ = false;
};

}  // namespace crmstream
