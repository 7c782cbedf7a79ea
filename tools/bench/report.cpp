#include "report.h"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <ctime>
#include <fstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace rw::bench {
namespace {

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) {
      auto colon = line.find(':');
      if (colon != std::string::npos) return line.substr(line.find_first_not_of(' ', colon + 1));
    }
  }
  return "unknown";
}

// CSV quoting: fields with commas or quotes are quoted, quotes doubled.
std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string q = "\"";
  for (char c : s) {
    if (c == '"') q += '"';
    q += c;
  }
  return q + "\"";
}

// A cell as JSON: a number when the whole text is one, else the text.
nlohmann::json json_cell(const std::string& s) {
  if (!s.empty()) {
    char* end = nullptr;
    const double v = std::strtod(s.c_str(), &end);
    if (end == s.c_str() + s.size() && std::isfinite(v)) return v;
  }
  return s;
}

// {"run": {"cpu": ..., "date": ...}, "tables": [{"title", "columns", "rows": [{column: value}],
// "notes"}]}: one object, numbers as numbers.
std::string render_json(const std::vector<Table>& tables, const std::vector<std::string>& info) {
  nlohmann::json run = nlohmann::json::object();
  for (const std::string& line : info) {
    const auto colon = line.find(": ");
    if (colon != std::string::npos) run[line.substr(0, colon)] = line.substr(colon + 2);
  }
  nlohmann::json out{{"run", run}, {"tables", nlohmann::json::array()}};
  for (const Table& t : tables) {
    nlohmann::json rows = nlohmann::json::array();
    for (const auto& row : t.rows) {
      nlohmann::json r = nlohmann::json::object();
      for (std::size_t c = 0; c < t.columns.size() && c < row.size(); ++c) {
        r[t.columns[c]] = json_cell(row[c]);
      }
      rows.push_back(std::move(r));
    }
    out["tables"].push_back(
        {{"title", t.title}, {"columns", t.columns}, {"rows", rows}, {"notes", t.notes}});
  }
  return out.dump(2) + "\n";
}

}  // namespace

std::vector<std::string> run_info(int argc, char** argv) {
  std::time_t now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  char date[32];
  std::strftime(date, sizeof(date), "%Y-%m-%d %H:%M UTC", std::gmtime(&now));
  std::string command = "rewind-bench";
  for (int i = 1; i < argc; ++i) command += fmt::format(" {}", argv[i]);
  // The load when the run started: other processes sharing the cores skew every number.
  std::string load = "unknown";
  if (std::ifstream in("/proc/loadavg"); in) {
    double l1 = 0, l5 = 0, l15 = 0;
    in >> l1 >> l5 >> l15;
    load = fmt::format("{:.2f} {:.2f} {:.2f} (1, 5, 15 min)", l1, l5, l15);
  }
  return {fmt::format("cpu: {}", cpu_model()), fmt::format("load average at start: {}", load),
          fmt::format("threads: {} (OpenMP)", omp_get_max_threads()), fmt::format("date: {}", date),
          fmt::format("command: `{}`", command)};
}

std::string render(const std::vector<Table>& tables, const std::vector<std::string>& info,
                   Format format) {
  if (format == Format::json) return render_json(tables, info);
  std::string out;
  if (format == Format::csv) {
    // One block per table, separated by a blank line; the run info as comment lines.
    for (const auto& line : info) out += fmt::format("# {}\n", line);
    for (const Table& t : tables) {
      out += fmt::format("\n# {}\n", t.title);
      std::vector<std::string> header;
      for (const auto& c : t.columns) header.push_back(csv_field(c));
      out += fmt::format("{}\n", fmt::join(header, ","));
      for (const auto& row : t.rows) {
        std::vector<std::string> fields;
        for (const auto& f : row) fields.push_back(csv_field(f));
        out += fmt::format("{}\n", fmt::join(fields, ","));
      }
    }
    return out;
  }
  for (const auto& line : info) out += fmt::format("- {}\n", line);
  for (const Table& t : tables) {
    out += fmt::format("\n### {}\n\n", t.title);
    std::vector<std::size_t> width(t.columns.size());
    for (std::size_t c = 0; c < t.columns.size(); ++c) {
      width[c] = t.columns[c].size();
      for (const auto& row : t.rows) width[c] = std::max(width[c], row[c].size());
    }
    auto line = [&](const std::vector<std::string>& cells) {
      std::string l = "|";
      for (std::size_t c = 0; c < cells.size(); ++c)
        l += fmt::format(" {:<{}} |", cells[c], width[c]);
      return l + "\n";
    };
    out += line(t.columns);
    std::string sep = "|";
    for (std::size_t w : width) sep += std::string(w + 2, '-') + "|";
    out += sep + "\n";
    for (const auto& row : t.rows) out += line(row);
    if (!t.notes.empty()) out += "\n";
    for (const auto& note : t.notes) out += fmt::format("{}\n", note);
  }
  return out;
}

}  // namespace rw::bench
