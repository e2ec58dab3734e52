// Pieces of request targets: percent-decoding a path segment and encoding
// one back, so an id travels between servers unchanged.
//
// Thread-safety: free functions with no shared state.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace crmstream::http {

// Decodes %XX escapes; nullopt when an escape is malformed. '+' stays '+'
// (paths, not form data).
std::optional<std::string> PercentDecode(std::string_view s);
// Escapes every byte but RFC 3986's unreserved characters.
std::string PercentEncodeSegment(std::string_view s);
// The target's path: everything before '?'.
std::string_view TargetPath(std::string_view target);

}  // namespace crmstream::http
