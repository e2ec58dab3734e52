#include "crmstream/http/access_policy.h"

#include <algorithm>
#include <boost/asio/ip/address.hpp>
#include <cctype>
#include <optional>

#include "crmstream/common/private_file.h"

namespace crmstream::http {
namespace {

constexpr size_t kMinTokenChars = 16;

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// "Name:8080" -> "name", "[::1]:8080" -> "::1", "::1" stays.
std::string HostName(std::string_view host) {
  if (!host.empty() && host.front() == '[') {
    const size_t close = host.find(']');
    return Lower(close == std::string_view::npos ? host.substr(1) : host.substr(1, close - 1));
  }
  const size_t colon = host.find(':');
  if (colon != std::string_view::npos && host.find(':', colon + 1) == std::string_view::npos) {
    host = host.substr(0, colon);
  }
  return Lower(host);
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

// Compares without an early exit, so timing does not reveal a prefix.
bool SameSecret(std::string_view a, std::string_view b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < a.size(); ++i) {
    diff |= static_cast<unsigned char>(a[i] ^ (i < b.size() ? b[i] : 0));
  }
  return diff == 0;
}

std::optional<std::string> Base64Decode(std::string_view in) {
  auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  while (!in.empty() && in.back() == '=') in.remove_suffix(1);
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  for (char c : in) {
    const int v = value(c);
    if (v < 0) return std::nullopt;
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xFF));
    }
  }
  return out;
}

bool StartsWithNoCase(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && Lower(s.substr(0, prefix.size())) == prefix;
}

}  // namespace

Result<AccessPolicy> AccessPolicy::Create(const ServerOptions& options) {
  AccessPolicy p;
  boost::system::error_code ec;
  const auto address = boost::asio::ip::make_address(options.bind_address, ec);
  if (ec) {
    return Status::InvalidArgument(options.name + ".bind_address '" + options.bind_address +
                                   "': not an IP address (" + ec.message() + ")");
  }
  p.hosts_ = {"localhost", "localhost.", HostName(options.bind_address)};
  for (const std::string& h : options.allowed_hosts) {
    if (h == "*") {
      p.any_host_ = true;
    } else if (!h.empty()) {
      p.hosts_.push_back(HostName(h));
    }
  }
  if (!options.auth_token_file.empty()) {
    const std::string field = options.name + ".auth_token_file";
    CRM_ASSIGN_OR_RETURN(std::string content, ReadPrivateFile(options.auth_token_file, field));
    p.token_ = std::string(Trim(content));
    if (p.token_.size() < kMinTokenChars ||
        p.token_.find_first_of(" \t\r\n") != std::string::npos) {
      return Status::InvalidArgument(field + " " + options.auth_token_file +
                                     ": the token must be one word of at least " +
                                     std::to_string(kMinTokenChars) + " characters");
    }
  } else if (!address.is_loopback()) {
    return Status::InvalidArgument(
        options.name + ".bind_address " + options.bind_address + " is beyond loopback: set " +
        options.name +
        ".auth_token_file to a file holding a bearer token (mode 600), or bind to 127.0.0.1");
  }
  p.public_paths_ = options.public_paths;
  return p;
}

bool AccessPolicy::HostAllowed(std::string_view host) const {
  if (any_host_) return true;
  const std::string name = HostName(Trim(host));
  if (name.empty()) return false;
  boost::system::error_code ec;
  (void)boost::asio::ip::make_address(name, ec);
  if (!ec) return true;  // an IP literal: no name for a page to rebind
  return std::find(hosts_.begin(), hosts_.end(), name) != hosts_.end();
}

bool AccessPolicy::Authorized(std::string_view path, std::string_view authorization) const {
  if (token_.empty()) return true;
  if (std::find(public_paths_.begin(), public_paths_.end(), path) != public_paths_.end()) {
    return true;
  }
  authorization = Trim(authorization);
  if (StartsWithNoCase(authorization, "bearer ")) {
    return SameSecret(Trim(authorization.substr(7)), token_);
  }
  if (StartsWithNoCase(authorization, "basic ")) {
    const auto decoded = Base64Decode(Trim(authorization.substr(6)));
    if (!decoded) return false;
    const size_t colon = decoded->find(':');
    if (colon == std::string::npos) return false;
    return SameSecret(std::string_view(*decoded).substr(colon + 1), token_);
  }
  return false;
}

}  // namespace crmstream::http
