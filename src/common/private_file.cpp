#include "crmstream/common/private_file.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

namespace crmstream {

Result<std::string> ReadPrivateFile(const std::string& path, std::string_view what) {
  const std::string where = std::string(what) + " " + path;
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    return Status::IOError(where + ": " + std::strerror(errno));
  }
  if (!S_ISREG(st.st_mode)) return Status::InvalidArgument(where + ": not a regular file");
  if ((st.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof(mode), "%04o", static_cast<unsigned>(st.st_mode & 07777));
    return Status::InvalidArgument(where +
                                   ": holds a secret but is open to group or others (mode " + mode +
                                   "); chmod 600 " + path);
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::IOError(where + ": cannot be opened");
  std::ostringstream content;
  content << in.rdbuf();
  if (in.bad()) return Status::IOError(where + ": read failed");
  return content.str();
}

}  // namespace crmstream
