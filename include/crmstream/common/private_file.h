// Files that hold secrets (bearer tokens, Kafka credentials): read only when
// nobody but the owner can read them, so a leaked mode bit is an error at
// start-up instead of a secret open to every local user.
//
// Thread-safety: free functions with no shared state.
#pragma once

#include <string>
#include <string_view>

#include "crmstream/common/status.h"

namespace crmstream {

// The whole content of `path`. InvalidArgument naming `what` (the config
// field or option that named the file) when it is not a regular file or is
// readable or writable by group or others; IOError when it cannot be read.
// The content never appears in an error.
Result<std::string> ReadPrivateFile(const std::string& path, std::string_view what);

}  // namespace crmstream
