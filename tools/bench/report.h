#pragma once
// Benchmark results as tables, rendered as markdown (for docs/benchmarks.md), CSV or JSON.
#include <string>
#include <vector>

namespace rw::bench {

struct Table {
  std::string title;
  std::vector<std::string> columns;
  std::vector<std::vector<std::string>> rows;
  std::vector<std::string> notes;  // printed under the table (markdown only)
};

enum class Format { md, csv, json };

// The machine and run, as "key: value" lines: CPU model, load average, threads, date (UTC),
// command line.
std::vector<std::string> run_info(int argc, char** argv);

std::string render(const std::vector<Table>& tables, const std::vector<std::string>& info,
                   Format format);

}  // namespace rw::bench
