#include "ablate/report.h"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <span>
#include <sstream>
#include <thread>

#include <fmt/format.h>

#include "common/progress.h"
#include "core/error.h"
#include "nn/atomic_file.h"

namespace rw::ablate {
namespace {

namespace fs = std::filesystem;

// A file stem written into paths, markdown links and gnuplot strings: nothing that needs quoting.
void check_file_stem(const std::string& name) {
  const bool ok =
      !name.empty() && name.front() != '.' && std::all_of(name.begin(), name.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '-' || c == '_' || c == '.';
      });
  RW_CHECK(ok,
           "rewind-ablate: result name '{}' is not a plain file name (letters, digits, '-', "
           "'_', '.')",
           name);
}

void check_table(const Table& table, const std::string& what) {
  RW_CHECK(!table.columns.empty(), "rewind-ablate: {}: the table has no columns", what);
  for (std::size_t r = 0; r < table.rows.size(); ++r) {
    RW_CHECK(table.rows[r].size() == table.columns.size(),
             "rewind-ablate: {}: table row {} has {} cells for {} columns", what, r,
             table.rows[r].size(), table.columns.size());
  }
}

// Characters as a reader sees them: UTF-8 continuation bytes do not take a column.
std::size_t display_width(const std::string& s) {
  return static_cast<std::size_t>(
      std::count_if(s.begin(), s.end(), [](char c) { return (c & 0xC0) != 0x80; }));
}

std::string markdown_cell(const std::string& cell) {
  std::string out;
  for (std::size_t i = 0; i < cell.size(); ++i) {
    const char c = cell[i];
    if (c == '|') {
      out += "\\|";
    } else if (c == '\r') {
      if (i + 1 < cell.size() && cell[i + 1] == '\n') ++i;
      out += "<br>";
    } else if (c == '\n') {
      out += "<br>";
    } else {
      out += c;
    }
  }
  return out;
}

// "12", "-0.5", "3.1e-05", "97.5%": a number, optionally a percentage.
bool is_number(const std::string& cell) {
  std::string s = cell;
  if (!s.empty() && s.back() == '%') s.pop_back();
  if (s.empty()) return false;
  char* end = nullptr;
  std::strtod(s.c_str(), &end);
  return end == s.c_str() + s.size() && !std::isspace(static_cast<unsigned char>(s.front()));
}

std::string csv_field(const std::string& field) {
  if (field.find_first_of(",\"\r\n") == std::string::npos) return field;
  std::string out = "\"";
  for (char c : field) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

// A gnuplot single-quoted string: no escapes are processed inside, a quote is written twice.
std::string gnuplot_string(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') out += '\'';
    out += (c == '\n' || c == '\r') ? ' ' : c;
  }
  return out + "'";
}

struct DrawnSeries {
  std::string name;
  std::vector<std::pair<double, double>> points;
};

// The series as gnuplot will draw them: points it cannot draw left out, series left empty dropped
// (an empty data block would shift the `index` of the ones after it).
std::vector<DrawnSeries> drawable_series(const Plot& plot) {
  std::vector<DrawnSeries> out;
  for (const Series& s : plot.series) {
    RW_CHECK(s.x.size() == s.y.size(),
             "rewind-ablate: plot '{}': series '{}' has {} x values and {} y values", plot.title,
             s.name, s.x.size(), s.y.size());
    DrawnSeries drawn{s.name, {}};
    for (std::size_t i = 0; i < s.x.size(); ++i) {
      const double x = s.x[i], y = s.y[i];
      if (!std::isfinite(x) || !std::isfinite(y)) continue;
      if ((plot.log_x && x <= 0) || (plot.log_y && y <= 0)) continue;
      drawn.points.emplace_back(x, y);
    }
    if (!drawn.points.empty()) out.push_back(std::move(drawn));
  }
  RW_CHECK(!out.empty(), "rewind-ablate: plot '{}' has no points to draw ({} series)", plot.title,
           plot.series.size());
  return out;
}

// Log axes over powers of two (sequence lengths, depths) read best in base 2.
bool all_powers_of_two(const std::vector<DrawnSeries>& series, bool x_axis) {
  for (const DrawnSeries& s : series) {
    for (const auto& [x, y] : s.points) {
      const double v = x_axis ? x : y;
      int exponent = 0;
      if (v < 1 || std::frexp(v, &exponent) != 0.5) return false;
    }
  }
  return true;
}

std::string heading(int level, const std::string& text) {
  return std::string(static_cast<std::size_t>(std::max(1, level)), '#') + " " + text + "\n\n";
}

// GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens.
std::string github_anchor(const std::string& text) {
  std::string out;
  for (char c : text) {
    const unsigned char u = static_cast<unsigned char>(c);
    if (std::isalnum(u) || c == '-' || c == '_' || u >= 0x80) {
      out += static_cast<char>(std::tolower(u));
    } else if (c == ' ') {
      out += '-';
    }
  }
  return out;
}

std::string run_line(const RunInfo& info) {
  std::string line = fmt::format("Scale `{}`, seed {}", scale_name(info.scale), info.seed);
  if (info.seconds > 0) line += ", " + tools::format_duration(info.seconds);
  if (!info.command.empty()) line += fmt::format(": `{}`", info.command);
  return line + ".\n\n";
}

std::string read_all(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Runs `argv` in `dir` with stdout and stderr captured together; returns its exit status (128 +
// signal when killed) and what it printed.
std::pair<int, std::string> run_captured(const std::vector<std::string>& argv,
                                         const fs::path& dir) {
  int pipe_fds[2];
  RW_CHECK(::pipe(pipe_fds) == 0, "rewind-ablate: cannot create a pipe for {}: {}", argv[0],
           std::strerror(errno));
  // Everything the child needs is prepared before fork: after it, only async-signal-safe calls.
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  const std::string dir_string = dir.string();
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::close(pipe_fds[0]);
    const int null_in = ::open("/dev/null", O_RDONLY);
    if (null_in >= 0) ::dup2(null_in, 0);
    ::dup2(pipe_fds[1], 1);
    ::dup2(pipe_fds[1], 2);
    if (::chdir(dir_string.c_str()) != 0) ::_exit(126);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  ::close(pipe_fds[1]);
  if (pid < 0) {
    ::close(pipe_fds[0]);
    throw Error(fmt::format("rewind-ablate: cannot start {}: {}", argv[0], std::strerror(errno)));
  }
  std::string output;
  char buffer[4096];
  for (;;) {
    const ssize_t n = ::read(pipe_fds[0], buffer, sizeof buffer);
    if (n > 0) {
      output.append(buffer, static_cast<std::size_t>(n));
    } else if (n == 0 || errno != EINTR) {
      break;
    }
  }
  ::close(pipe_fds[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  const int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return {code, output};
}

std::string trimmed(std::string s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
  return s;
}

}  // namespace

std::string markdown_table(const Table& table) {
  check_table(table, "markdown table");
  const std::size_t n = table.columns.size();
  std::vector<std::vector<std::string>> cells;
  cells.reserve(table.rows.size() + 1);
  cells.emplace_back();
  for (const std::string& c : table.columns) cells.back().push_back(markdown_cell(c));
  for (const auto& row : table.rows) {
    cells.emplace_back();
    for (const std::string& c : row) cells.back().push_back(markdown_cell(c));
  }
  std::vector<std::size_t> width(n, 3);
  std::vector<bool> numeric(n, false);
  for (std::size_t c = 0; c < n; ++c) {
    bool any = false, all = true;
    for (const auto& row : table.rows) {
      if (row[c].empty()) continue;
      any = true;
      all = all && is_number(row[c]);
    }
    numeric[c] = any && all;
    for (const auto& row : cells) width[c] = std::max(width[c], display_width(row[c]));
  }
  auto pad = [&](const std::string& s, std::size_t c) {
    const std::string fill(width[c] - display_width(s), ' ');
    return numeric[c] ? fill + s : s + fill;
  };
  std::string out;
  auto line = [&](const std::vector<std::string>& row) {
    out += "|";
    for (std::size_t c = 0; c < n; ++c) {
      out += ' ';
      out += pad(row[c], c);
      out += " |";
    }
    out += "\n";
  };
  line(cells[0]);
  out += "|";
  for (std::size_t c = 0; c < n; ++c) {
    out += ' ';
    out += numeric[c] ? std::string(width[c] - 1, '-') + ':' : std::string(width[c], '-');
    out += " |";
  }
  out += "\n";
  for (std::size_t r = 1; r < cells.size(); ++r) line(cells[r]);
  return out;
}

std::string csv_table(const Table& table) {
  check_table(table, "CSV table");
  std::string out;
  auto line = [&](const std::vector<std::string>& row) {
    for (std::size_t c = 0; c < row.size(); ++c) {
      if (c > 0) out += ',';
      out += csv_field(row[c]);
    }
    out += '\n';
  };
  line(table.columns);
  for (const auto& row : table.rows) line(row);
  return out;
}

std::string gnuplot_data(const Plot& plot) {
  std::string out = fmt::format("# {}\n# x: {}; y: {}\n", plot.title, plot.x_label, plot.y_label);
  const std::vector<DrawnSeries> series = drawable_series(plot);
  for (std::size_t i = 0; i < series.size(); ++i) {
    // Blocks are separated by two blank lines: gnuplot's `index i` is block i.
    if (i > 0) out += "\n\n";
    out += fmt::format("# index {}: {}\n", i, series[i].name);
    for (const auto& [x, y] : series[i].points) out += fmt::format("{} {}\n", x, y);
  }
  return out;
}

std::string gnuplot_script(const Plot& plot, const std::string& name) {
  check_file_stem(name);
  const std::vector<DrawnSeries> series = drawable_series(plot);
  std::string s;
  s += fmt::format("# {}\n", plot.title);
  s += fmt::format(
      "# Draws {0}.plot.dat (one data block per series) to {0}.svg. Redraw by hand with\n"
      "#   gnuplot {0}.gp\n"
      "# in this directory; another output: gnuplot -e \"svg_file='other.svg'\" {0}.gp\n",
      name);
  s += fmt::format("if (!exists(\"svg_file\")) svg_file = '{}.svg'\n", name);
  // noenhanced: series names such as "LSH_4" are text, not gnuplot's sub/superscript markup.
  s += "set terminal svg size 960,600 dynamic noenhanced font 'Helvetica,15' linewidth 1.5 "
       "background rgb 'white'\n";
  s += "set output svg_file\n";
  s += fmt::format("set title {} font ',18'\n", gnuplot_string(plot.title));
  s += fmt::format("set xlabel {}\n", gnuplot_string(plot.x_label));
  s += fmt::format("set ylabel {}\n", gnuplot_string(plot.y_label));
  for (const bool x_axis : {true, false}) {
    if (!(x_axis ? plot.log_x : plot.log_y)) continue;
    const char* axis = x_axis ? "x" : "y";
    if (all_powers_of_two(series, x_axis)) {
      s += fmt::format("set logscale {} 2\nset format {} '%.0f'\n", axis, axis);
    } else {
      s += fmt::format("set logscale {} 10\nset format {} '%g'\n", axis, axis);
    }
  }
  // Okabe and Ito's colours, told apart with colour blindness; no yellow, unreadable on white.
  const char* colours[] = {"#0072b2", "#d55e00", "#009e73", "#cc79a7",
                           "#e69f00", "#56b4e9", "#000000", "#999999"};
  for (int i = 0; i < 8; ++i) {
    s += fmt::format("set linetype {} linecolor rgb '{}'\n", i + 1, colours[i]);
  }
  s += "set linetype cycle 8\n";
  s += "set grid back linetype 1 linecolor rgb '#e4e4e4' linewidth 1\n";
  s += "set border 3\nset tics nomirror out\n";
  // Under the plot area the key never hides a curve, however the curves run, and long names do not
  // narrow the plot (as a key at its right would).
  std::size_t longest = 0;
  for (const DrawnSeries& d : series) longest = std::max(longest, display_width(d.name));
  // gnuplot overestimates text widths: long names get fewer columns than fit unless their width is
  // trimmed (checked by eye: five names of up to 30 characters then sit in two columns without
  // overlapping).
  const int trim = longest > 16 ? -static_cast<int>(longest / 7) : 0;
  s += fmt::format("set key outside below center horizontal Left reverse spacing 1.2 width {}\n",
                   trim);
  // A little air around linear ranges; log axes already round out to whole decades.
  s += fmt::format("set offsets {0}, {0}, {1}, {1}\n", plot.log_x ? "0" : "graph 0.02",
                   plot.log_y ? "0" : "graph 0.05");
  s += "plot \\\n";
  for (std::size_t i = 0; i < series.size(); ++i) {
    // Markers help on a few points (a sweep); on a learning curve they would be a smear.
    const bool markers = series[i].points.size() <= 40;
    s += fmt::format("  {} index {} using 1:2 with {} linewidth 2{} title {}{}\n",
                     i == 0 ? gnuplot_string(name + ".plot.dat") : std::string("''"), i,
                     markers ? "linespoints" : "lines", markers ? " pointtype 7 pointsize 0.8" : "",
                     gnuplot_string(series[i].name), i + 1 < series.size() ? ", \\" : "");
  }
  return s;
}

std::string result_markdown(const Result& result, const RunInfo& info, int level) {
  check_file_stem(result.name);
  std::string md = heading(level, result.title.empty() ? result.name : result.title);
  md += run_line(info);
  if (!trimmed(result.settings).empty()) md += trimmed(result.settings) + "\n\n";
  md += markdown_table(result.table) + "\n";
  if (result.plot) {
    md += fmt::format("![{}]({}.svg)\n\n",
                      markdown_cell(result.plot->title.empty() ? result.title : result.plot->title),
                      result.name);
  }
  if (!trimmed(result.findings).empty()) {
    md += heading(level + 1, "Findings") + trimmed(result.findings) + "\n\n";
  }
  return trimmed(md) + "\n";
}

std::optional<fs::path> find_program(const std::string& program) {
  if (program.find('/') != std::string::npos) {
    if (::access(program.c_str(), X_OK) == 0) return fs::path(program);
    return std::nullopt;
  }
  const char* path = std::getenv("PATH");
  std::stringstream dirs(path ? path : "/usr/local/bin:/usr/bin:/bin");
  for (std::string dir; std::getline(dirs, dir, ':');) {
    const fs::path candidate = fs::path(dir.empty() ? "." : dir) / program;
    std::error_code ec;
    if (fs::is_regular_file(candidate, ec) && ::access(candidate.c_str(), X_OK) == 0) {
      return candidate;
    }
  }
  return std::nullopt;
}

void write_text_atomically(const fs::path& path, const std::string& text) {
  nn::write_file_atomically(path, std::as_bytes(std::span(text.data(), text.size())));
}

fs::path render_plot(const fs::path& dir, const std::string& name) {
  check_file_stem(name);
  const fs::path svg = dir / (name + ".svg");
  const std::optional<fs::path> gnuplot = find_program("gnuplot");
  RW_CHECK(gnuplot.has_value(),
           "gnuplot was not found on PATH; it draws the plot {} (install it: Debian and Ubuntu "
           "package gnuplot-nox). The table and the plot's data and script are written in {}",
           svg.string(), dir.string());
  // gnuplot writes a temporary name, renamed once the drawing is complete and checked.
  const std::string temp_name = fmt::format(".{}.svg.tmp-{}", name, ::getpid());
  const fs::path temp = dir / temp_name;
  struct RemoveTemp {
    fs::path path;
    ~RemoveTemp() {
      std::error_code ignored;
      fs::remove(path, ignored);
    }
  } remove_temp{temp};
  const auto [code, output] = run_captured(
      {gnuplot->string(), "-e", fmt::format("svg_file='{}'", temp_name), name + ".gp"}, dir);
  RW_CHECK(code == 0, "gnuplot failed (exit status {}) drawing {} from {}: {}", code, svg.string(),
           (dir / (name + ".gp")).string(),
           trimmed(output).empty() ? "(no output)" : trimmed(output));
  const std::string drawing = read_all(temp);
  RW_CHECK(drawing.find("<svg") != std::string::npos && drawing.find("</svg>") != std::string::npos,
           "gnuplot exited normally but wrote no complete SVG drawing for {} ({} bytes){}{}",
           svg.string(), drawing.size(), trimmed(output).empty() ? "" : ": ", trimmed(output));
  // A warning (an empty range widened, say) leaves a usable plot: show it, keep the plot.
  if (!trimmed(output).empty()) {
    std::fprintf(stderr, "rewind-ablate: warning: gnuplot, drawing %s: %s\n", svg.c_str(),
                 trimmed(output).c_str());
  }
  write_text_atomically(svg, drawing);
  return svg;
}

WrittenFiles write_result(const Result& result, const RunInfo& info, const fs::path& dir) {
  check_file_stem(result.name);
  RW_CHECK(fs::is_directory(dir), "rewind-ablate: output directory {} does not exist",
           dir.string());
  WrittenFiles files;
  // Everything is rendered before the first file is written, so a bad table writes nothing.
  const std::string markdown = result_markdown(result, info, 1);
  const std::string csv = csv_table(result.table);
  std::string data, script;
  if (result.plot) {
    data = gnuplot_data(*result.plot);
    script = gnuplot_script(*result.plot, result.name);
  }
  files.csv = dir / (result.name + ".csv");
  write_text_atomically(files.csv, csv);
  files.markdown = dir / (result.name + ".md");
  write_text_atomically(files.markdown, markdown);
  if (result.plot) {
    files.plot_data = dir / (result.name + ".plot.dat");
    write_text_atomically(files.plot_data, data);
    files.plot_script = dir / (result.name + ".gp");
    write_text_atomically(files.plot_script, script);
    files.svg = render_plot(dir, result.name);
  }
  return files;
}

std::string report_markdown(const ReportHeader& header, const std::vector<ReportEntry>& entries) {
  std::string md = heading(1, "Reformer ablations");
  md +=
      "The experiments of *Reformer: The Efficient Transformer* (Kitaev, Kaiser and Levskaya, "
      "ICLR 2020), reproduced with rewind by `rewind-ablate`. Each section below was also "
      "written on its own as `<name>.md`, with its table as `<name>.csv` and its plot as "
      "`<name>.svg` (redraw it with `gnuplot <name>.gp`).\n\n";
  std::size_t failed = 0;
  for (const ReportEntry& e : entries) failed += e.result ? 0 : 1;
  md += fmt::format("- **Date:** {}\n", header.date_utc);
  md += fmt::format("- **Machine:** {}\n", header.machine);
  md += fmt::format("- **Scale:** `{}`, **seed:** {}\n", scale_name(header.scale), header.seed);
  md += fmt::format(
      "- **Total time:** {} (training runs already finished under the output directory are "
      "reused, not trained again; each run's log.jsonl there has its own timings)\n",
      tools::format_duration(header.total_seconds));
  md += fmt::format("- **Command:** `{}`\n", header.command);
  md += fmt::format("- **Experiments:** {} run, {}\n\n", entries.size(),
                    failed == 0 ? std::string("all finished") : fmt::format("{} failed", failed));
  md += heading(2, "Contents");
  for (const ReportEntry& e : entries) {
    const std::string title = e.result
                                  ? (e.result->title.empty() ? e.result->name : e.result->title)
                                  : fmt::format("{}: failed", e.name);
    md += fmt::format("- [{}](#{}) ({})\n", markdown_cell(title), github_anchor(title),
                      tools::format_duration(e.info.seconds));
  }
  md += "\n";
  for (const ReportEntry& e : entries) {
    if (e.result) {
      md += result_markdown(*e.result, e.info, 2) + "\n";
    } else {
      md += heading(2, fmt::format("{}: failed", e.name));
      if (!e.description.empty()) md += e.description + "\n\n";
      md += run_line(e.info);
      md += "```\n" + trimmed(e.error) + "\n```\n\n";
    }
  }
  return trimmed(md) + "\n";
}

std::string utc_now() {
  const std::time_t now = std::time(nullptr);
  std::tm utc{};
  ::gmtime_r(&now, &utc);
  char text[64];
  std::strftime(text, sizeof text, "%Y-%m-%d %H:%M UTC", &utc);
  return text;
}

std::string machine_description() {
  std::string model;
  std::ifstream cpuinfo("/proc/cpuinfo");
  for (std::string line; model.empty() && std::getline(cpuinfo, line);) {
    if (line.rfind("model name", 0) != 0) continue;
    const auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    model = line.substr(colon + 1);
    model.erase(0, model.find_first_not_of(" \t"));
  }
  if (model.empty()) model = "unknown CPU";
  const unsigned threads = std::thread::hardware_concurrency();
  return threads > 0 ? fmt::format("{}, {} logical cores", model, threads) : model;
}

std::string command_line(int argc, const char* const* argv) {
  std::string out;
  for (int i = 0; i < argc; ++i) {
    std::string arg = argv[i] ? argv[i] : "";
    if (i == 0) arg = fs::path(arg).filename().string();
    const bool plain = !arg.empty() && std::all_of(arg.begin(), arg.end(), [](char c) {
      return std::isalnum(static_cast<unsigned char>(c)) || std::strchr("_-./=:,+@%", c);
    });
    if (i > 0) out += ' ';
    if (plain) {
      out += arg;
    } else {
      out += '\'';
      for (char c : arg) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
      out += '\'';
    }
  }
  return out;
}

}  // namespace rw::ablate
