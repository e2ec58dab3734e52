// Who may talk to a server: the Host allowlist (against DNS rebinding) and
// the bearer token (required beyond loopback). Built once from the server's
// options; the checks are pure functions of a request's headers.
//
// Thread-safety: immutable after Create; safe to share.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "crmstream/common/status.h"
#include "crmstream/http/server.h"

namespace crmstream::http {

class AccessPolicy {
 public:
  // InvalidArgument naming `<name>.bind_address` for an address that is not
  // an IP literal, and `<name>.auth_token_file` when the address is beyond
  // loopback and no token file is given, or the file is unsafe or too short.
  static Result<AccessPolicy> Create(const ServerOptions& options);

  // Whether a Host header value (with or without a port) may be served:
  // loopback names, IP literals (a page cannot rebind a literal address),
  // the bind address and the configured names.
  bool HostAllowed(std::string_view host) const;
  // Whether a request for `path` with this Authorization header may be
  // served: always when no token is configured or the path is public.
  bool Authorized(std::string_view path, std::string_view authorization) const;
  bool token_required() const { return !token_.empty(); }

 private:
  std::vector<std::string> hosts_;  // lower case, no port
  bool any_host_ = false;
  std::string token_;
  std::vector<std::string> public_paths_;
};

}  // namespace crmstream::http
