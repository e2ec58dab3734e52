// A minimal streaming JSON writer for output records (scores, alerts, dead
// letters). Appends to a caller-owned string that is reused across records,
// so the hot path does not allocate once the buffer has grown. Commas are
// inserted automatically. Not thread-safe.
#pragma once

#include <charconv>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace crmstream {

// An object key known when the program is compiled, already encoded with its
// separators (`,"key":`), so writing it is one append instead of a scan for
// escapes and four appends. Made only by the `_key` literal below, which
// refuses at compile time a key that would need an escape.
class JsonKey {
 public:
  // `,"key":`: the leading comma is left out when no separator is due.
  constexpr std::string_view encoded() const { return encoded_; }

 private:
  template <size_t N>
  friend struct JsonKeyText;
  constexpr explicit JsonKey(std::string_view encoded) : encoded_(encoded) {}
  std::string_view encoded_;
};

// The encoded text of a `_key` literal, held as the literal's template
// argument (an object of static storage duration).
template <size_t N>
struct JsonKeyText {
  // NOLINTNEXTLINE(google-explicit-constructor): the literal's argument
  consteval JsonKeyText(const char (&key)[N]) {
    text[0] = ',';
    text[1] = '"';
    for (size_t i = 0; i + 1 < N; ++i) {
      const char c = key[i];
      if (static_cast<unsigned char>(c) < 0x20 || c == '"' || c == '\\') {
        throw "a _key literal must need no JSON escape";  // a compile error
      }
      text[i + 2] = c;
    }
    text[N + 1] = '"';
    text[N + 2] = ':';
  }
  constexpr JsonKey key() const { return JsonKey(std::string_view(text, N + 3)); }
  char text[N + 3] = {};  // ,"key":  (N counts the literal's terminating NUL)
};

namespace json_literals {
// "name"_key: a key checked and encoded at compile time.
template <JsonKeyText K>
consteval JsonKey operator""_key() {
  return K.key();
}
}  // namespace json_literals

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
  void Key(JsonKey key) {
    std::string_view text = key.encoded();
    if (after_key_ || !need_comma_) text.remove_prefix(1);
    // A key in a key's place is a caller's bug: it is written, as Key() does.
    after_key_ = true;
    need_comma_ = true;
    out_->append(text);
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
    Value(v);
  }
  template <typename T>
  void Field(JsonKey key, T v) {
    Key(key);
    Value(v);
  }

  // Appends `s` as a quoted JSON string with RFC 8259 escapes; bytes that are
  // not valid UTF-8 are passed through (callers that need strict UTF-8, like
  // the dead-letter encoder, check first).
  static void AppendString(std::string* out, std::string_view s);

 private:
  template <typename T>
  void Value(T v) {
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
