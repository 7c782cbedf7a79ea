#pragma once
// A JSON-lines log: one JSON object per line, appended and flushed as it is written, so a killed
// run loses at most the line being written and any tool (jq, pandas) reads it as it grows.
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

namespace rw::tools {

class JsonLinesLog {
 public:
  // Appends to `path` (created if missing); an rw::Error naming the file if it cannot be opened.
  explicit JsonLinesLog(const std::filesystem::path& path);
  void write(const nlohmann::json& record);
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
  std::ofstream out_;
};

}  // namespace rw::tools
