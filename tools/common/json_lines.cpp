#include "common/json_lines.h"

#include <cerrno>
#include <cstring>

#include "core/error.h"

namespace rw::tools {

JsonLinesLog::JsonLinesLog(const std::filesystem::path& path)
    : path_(path), out_(path, std::ios::app) {
  RW_CHECK(out_.good(), "{}: cannot open the log for appending: {}", path.string(),
           std::strerror(errno));
}

void JsonLinesLog::write(const nlohmann::json& record) {
  out_ << record.dump() << '\n';
  out_.flush();
  RW_CHECK(out_.good(), "{}: cannot write the log: {}", path_.string(), std::strerror(errno));
}

}  // namespace rw::tools
