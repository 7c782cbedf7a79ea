#pragma once
// Writing an experiment's Result as files a reader can open on GitHub and a user can re-plot:
//
//   <dir>/<name>.md         title, run line, settings, the table, the plot, findings
//   <dir>/<name>.csv        the table (RFC 4180 quoting)
//   <dir>/<name>.plot.dat   the plot's data: one gnuplot data block per series
//   <dir>/<name>.gp         a gnuplot script: `cd <dir> && gnuplot <name>.gp` redraws the plot
//   <dir>/<name>.svg        the plot, drawn by gnuplot (found on PATH)
//
// and, for `rewind-ablate all`, <dir>/REPORT.md collecting every experiment. Every file is written
// atomically (a temporary file in the same directory, then a rename), so a kill never leaves a
// half-written table behind.
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "ablate/experiment.h"

namespace rw::ablate {

// How a result was produced, for the line under its title.
struct RunInfo {
  Scale scale = Scale::small;
  uint64_t seed = 0;
  double seconds = 0;   // wall time of the experiment
  std::string command;  // the command line, shell-quoted
};

// The table as markdown: cells escaped ('|' and line breaks), columns padded to one width so the
// text reads as a table too, numeric columns right-aligned.
std::string markdown_table(const Table& table);
// The table as CSV: a header line, then one line per row; fields with a comma, a double quote or
// a line break are quoted, with inner quotes doubled (RFC 4180). Lines end with "\n".
std::string csv_table(const Table& table);

// The plot's data file: one block per series ("# <series name>" then "x y" lines), blocks apart by
// two blank lines, so gnuplot's `index N` selects series N. Points gnuplot cannot draw (not finite,
// or not positive on a log axis) are left out.
std::string gnuplot_data(const Plot& plot);
// A gnuplot script drawing `<name>.plot.dat` to `<name>.svg` (both relative to the script's
// directory). The output name may be overridden with `gnuplot -e "svg_file='x.svg'" <name>.gp`.
std::string gnuplot_script(const Plot& plot, const std::string& name);

// The result as markdown, its title a heading of `level` ('#' repeated) and its sections one level
// below, the plot embedded as `![title](<name>.svg)` (a path relative to the markdown file).
std::string result_markdown(const Result& result, const RunInfo& info, int level = 1);

struct WrittenFiles {
  std::filesystem::path markdown, csv;
  // Empty when the result has no plot.
  std::filesystem::path plot_data, plot_script, svg;
};

// Writes the result's files into `dir` (which must exist). The markdown, CSV, data and script are
// written first; then gnuplot renders the SVG. Throws rw::Error when gnuplot is missing (naming the
// Debian package gnuplot-nox) or fails (with what it printed); the other files are written by then.
WrittenFiles write_result(const Result& result, const RunInfo& info,
                          const std::filesystem::path& dir);

// Renders `<dir>/<name>.gp` to `<dir>/<name>.svg` with gnuplot; throws rw::Error as above.
std::filesystem::path render_plot(const std::filesystem::path& dir, const std::string& name);

// The full path of `program` on PATH, if it is there and executable.
std::optional<std::filesystem::path> find_program(const std::string& program);

// Replaces `path` with `text` atomically.
void write_text_atomically(const std::filesystem::path& path, const std::string& text);

// REPORT.md: the run's header, then each experiment's section.
struct ReportHeader {
  std::string date_utc;  // "2025-01-31 14:05 UTC"
  std::string machine;   // "AMD EPYC 7B13, 2 cores"
  Scale scale = Scale::small;
  uint64_t seed = 0;
  double total_seconds = 0;
  std::string command;
};
struct ReportEntry {
  std::string name;              // the experiment
  std::string description;       // its one-line description (the heading when it failed)
  std::optional<Result> result;  // absent when it failed
  std::string error;             // why it failed
  RunInfo info;                  // its own time, and the command that reruns it alone
};
std::string report_markdown(const ReportHeader& header, const std::vector<ReportEntry>& entries);

// The current time as "YYYY-MM-DD HH:MM UTC".
std::string utc_now();
// "<CPU model>, <N> cores", from /proc/cpuinfo where there is one.
std::string machine_description();
// argv as one shell-quoted command line, the program as its file name (not its build path).
std::string command_line(int argc, const char* const* argv);

}  // namespace rw::ablate
