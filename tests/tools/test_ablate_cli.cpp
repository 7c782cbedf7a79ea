// rewind-ablate: its command line (help, bad flags, a tiny duplication run, a stop by SIGTERM) and
// its report writer (tools/ablate/report.h) on a hand-made result: CSV quoting, the markdown
// table, the gnuplot data and script, the SVG gnuplot draws, REPORT.md, atomic writes.
#include <doctest/doctest.h>
#include <signal.h>
#include <stdlib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "nn/nn_test_util.h"
#include "process.h"
#include "test_util.h"

#include "ablate/experiment.h"
#include "ablate/report.h"

namespace rw::test {
namespace {

namespace fs = std::filesystem;
using ablate::Plot;
using ablate::Result;
using ablate::RunInfo;
using ablate::RunOptions;
using ablate::Series;
using ablate::Table;

const std::string kAblate = REWIND_ABLATE_EXE;

// The experiments the issue asks for (Reformer paper: Table 2, Fig. 3 left and right, Fig. 4,
// Fig. 5, Table 3).
const std::vector<std::string> kExperiments = {"duplication", "shared-qk", "reversible",
                                               "hash-rounds", "speed",     "memory"};

// A fake experiment for the report writer: not registered in the tool. Its numbers follow from
// the seed so that two seeds give two different reports.
Result fake_experiment(const RunOptions& options) {
  Result r;
  r.name = "fake";
  r.title = "Fig. 9: a fake experiment, loss against steps";
  r.settings = fmt::format("Two made-up curves at scale `{}`.", ablate::scale_name(options.scale));
  r.table.columns = {"model", "steps", "final loss", "note"};
  const double base = 1.0 + static_cast<double>(options.seed);
  r.table.rows = {{"full", "100", fmt::format("{:.3f}", base), "plain"},
                  {"lsh | 4", "100", fmt::format("{:.3f}", base / 2), "has, a comma"}};
  Plot plot;
  plot.title = "It's a fake: loss by step";
  plot.x_label = "step";
  plot.y_label = "loss (bits/dim)";
  plot.log_x = true;
  for (const std::string& name : {std::string("full"), std::string("LSH_4")}) {
    Series s{name, {}, {}};
    for (int step = 1; step <= 64; step *= 2) {
      s.x.push_back(step);
      s.y.push_back(base / step + (name == "full" ? 0.5 : 0.1));
    }
    plot.series.push_back(s);
  }
  r.plot = plot;
  r.findings = "The fake LSH curve ends below the fake full curve: yes.";
  return r;
}

RunInfo fake_info() {
  return RunInfo{ablate::Scale::tiny, 3, 65, "rewind-ablate fake --scale tiny --seed 3"};
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::stringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

bool is_svg_document(const std::string& text) {
  return text.rfind("<?xml", 0) == 0 && contains(text, "<svg") &&
         contains(text, "xmlns=\"http://www.w3.org/2000/svg\"") && contains(text, "</svg>");
}

// No file named like a temporary (".<name>.tmp-...") is left in `dir`.
bool no_temporary_files(const TempDir& dir) {
  for (const std::string& name : dir.entries()) {
    if (contains(name, ".tmp")) return false;
  }
  return true;
}

// PATH replaced for one scope (gnuplot is looked up on PATH at each render).
class ScopedPath {
 public:
  explicit ScopedPath(const std::string& value) {
    const char* old = std::getenv("PATH");
    had_ = old != nullptr;
    if (had_) old_ = old;
    ::setenv("PATH", value.c_str(), 1);
  }
  ~ScopedPath() {
    if (had_) {
      ::setenv("PATH", old_.c_str(), 1);
    } else {
      ::unsetenv("PATH");
    }
  }

 private:
  bool had_ = false;
  std::string old_;
};

// Waits for the child, killing it if it outlives `seconds` (then the exit code says SIGKILL).
ProcessResult wait_at_most(ChildProcess& child, double seconds) {
  std::atomic<bool> done{false};
  std::thread watchdog([&] {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
    while (!done && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    if (!done) child.send(SIGKILL);
  });
  ProcessResult r = child.wait();
  done = true;
  watchdog.join();
  return r;
}

TEST_CASE("rewind-ablate --help lists every experiment, and each takes the run flags") {
  TempDir dir("ablate-help");
  const ProcessResult r = run_process({kAblate, "--help"}, dir / "");
  CHECK(r.exit_code == 0);
  for (const std::string& name : kExperiments) {
    CAPTURE(name);
    CHECK(contains(r.out, "  " + name + " "));
  }
  CHECK(contains(r.out, "  all "));
  // The tool's registry is this binary's too (tools/ablate is linked in): each experiment is
  // listed with its description, and the six are all there.
  std::vector<std::string> registered;
  for (const ablate::Experiment& e : ablate::experiments()) {
    CAPTURE(e.name);
    CHECK(contains(r.out, "  " + e.name + " "));
    CHECK(contains(r.out, e.description.substr(0, 40)));
    registered.push_back(e.name);
  }
  for (const std::string& name : kExperiments) {
    CAPTURE(name);
    CHECK(std::find(registered.begin(), registered.end(), name) != registered.end());
  }
  const ProcessResult sub = run_process({kAblate, "duplication", "--help"}, dir / "");
  CHECK(sub.exit_code == 0);
  for (const char* flag : {"--scale", "--seed", "--out", "--data", "--device", "--no-progress"}) {
    CAPTURE(flag);
    CHECK(contains(sub.out, flag));
  }
  CHECK(contains(sub.out, "=small"));      // the default scale is shown
  CHECK(contains(sub.out, "=ablations"));  // and the default output directory
}

TEST_CASE("rewind-ablate: unknown experiments and bad flags are clear errors") {
  TempDir dir("ablate-errors");
  const std::string out = (dir / "out").string();
  struct Case {
    std::vector<std::string> args;
    std::string message;
  };
  const std::vector<Case> cases = {
      {{"bogus"}, "rewind-ablate: error: unknown experiment 'bogus'; the experiments are: "},
      {{"duplication", "--scale", "huge", "--out", out},
       "rewind-ablate: error: --scale: huge not in {tiny,small,paper}"},
      {{"duplication", "--seed", "-1", "--out", out},
       "rewind-ablate: error: --seed: must be a non-negative integer, not '-1'"},
      {{"duplication", "--seed", "seven", "--out", out},
       "rewind-ablate: error: --seed: must be a non-negative integer, not 'seven'"},
      {{"duplication", "--data", (dir / "nope.txt").string(), "--out", out}, "nope.txt"},
      {{"duplication", "--device", "tpu", "--out", out}, "rewind-ablate: error: unknown device"},
      {{"--scale", "tiny", "duplication"},
       "rewind-ablate: error: --scale before the experiment: options follow its name"},
      {{}, "rewind-ablate: error: name an experiment to run: "},
  };
  for (const Case& c : cases) {
    std::vector<std::string> argv{kAblate};
    argv.insert(argv.end(), c.args.begin(), c.args.end());
    const ProcessResult r = run_process(argv, dir / "");
    CAPTURE(r.err);
    CHECK(r.exit_code == 1);
    CHECK(contains(r.err, c.message));
  }
  // The unknown-experiment error lists the real ones.
  const ProcessResult bogus = run_process({kAblate, "bogus"}, dir / "");
  CHECK(contains(bogus.err, "duplication"));
  CHECK(contains(bogus.err, "all"));
  // Nothing ran: no output directory was made.
  CHECK(!fs::exists(dir / "out"));
}

TEST_CASE("rewind-ablate duplication --scale tiny writes its table, CSV and plot") {
  TempDir dir("ablate-duplication");
  const auto start = std::chrono::steady_clock::now();
  ChildProcess child(
      {kAblate, "duplication", "--scale", "tiny", "--out", (dir / "out").string(), "--no-progress"},
      dir / "");
  const ProcessResult r = wait_at_most(child, 120);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  CAPTURE(r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(seconds < 60);
  const fs::path out = dir / "out";
  for (const char* file : {"duplication.md", "duplication.csv", "duplication.svg", "duplication.gp",
                           "duplication.plot.dat"}) {
    CAPTURE(file);
    CHECK(fs::is_regular_file(out / file));
  }
  CHECK(fs::is_directory(out / "duplication"));  // the experiment's work directory
  const std::string md = read_file(out / "duplication.md");
  CHECK(md.rfind("# Table 2", 0) == 0);
  CHECK(contains(md, "](duplication.svg)"));
  CHECK(contains(md, "| train \\ eval"));
  const std::vector<std::string> csv = lines_of(read_file(out / "duplication.csv"));
  REQUIRE(csv.size() >= 2);
  CHECK(contains(csv[0], "Full"));
  CHECK(is_svg_document(read_file(out / "duplication.svg")));
  // The table is printed too, and where the files went.
  CHECK(contains(r.out, "| train \\ eval"));
  CHECK(contains(r.out, (out / "duplication.md").string()));
  for (const auto& e : fs::directory_iterator(out)) {
    CAPTURE(e.path().string());
    CHECK(!contains(e.path().filename().string(), ".tmp"));
  }
}

TEST_CASE("rewind-ablate: SIGTERM stops an experiment without writing a partial table") {
  TempDir dir("ablate-stop");
  const fs::path out = dir / "out";
  // The small scale trains for minutes: the signal arrives mid-training.
  ChildProcess child(
      {kAblate, "duplication", "--scale", "small", "--out", out.string(), "--no-progress"},
      dir / "");
  // The work directory appears once the stop handlers are installed.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (!fs::exists(out / "duplication") && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  child.send(SIGTERM);
  const ProcessResult r = wait_at_most(child, 120);
  CAPTURE(r.err);
  CHECK(r.exit_code == 128 + SIGTERM);
  CHECK(contains(r.err, "rewind-ablate: stopped by signal 15 during duplication"));
  CHECK(!fs::exists(out / "duplication.md"));
  CHECK(!fs::exists(out / "duplication.csv"));
  CHECK(fs::is_directory(out / "duplication"));  // where the rerun resumes from
}

TEST_CASE("ablate report: CSV fields are quoted as RFC 4180 says") {
  Table t;
  t.columns = {"name", "value"};
  t.rows = {{"plain", "1.5"}, {"a,b", "say \"hi\""}, {"two\nlines", ""}, {"tab\there", "x"}};
  CHECK(ablate::csv_table(t) ==
        "name,value\n"
        "plain,1.5\n"
        "\"a,b\",\"say \"\"hi\"\"\"\n"
        "\"two\nlines\",\n"
        "tab\there,x\n");
  Table ragged;
  ragged.columns = {"a", "b"};
  ragged.rows = {{"1"}};
  CHECK(error_message([&] { ablate::csv_table(ragged); }) ==
        "rewind-ablate: CSV table: table row 0 has 1 cells for 2 columns");
}

TEST_CASE("ablate report: the markdown table escapes, aligns and right-aligns numbers") {
  Table t;
  t.columns = {"model", "accuracy", "note"};
  t.rows = {{"a|b", "97.5%", "x"}, {"LSH-8", "-1.25e-3", "line\nbreak"}, {"×2", "", ""}};
  const std::string md = ablate::markdown_table(t);
  const std::vector<std::string> lines = lines_of(md);
  REQUIRE(lines.size() == 5);
  CHECK(contains(lines[2], "a\\|b"));          // a pipe in a cell does not split it
  CHECK(contains(lines[3], "line<br>break"));  // nor does a line break
  // The number column is right-aligned, the text columns are not.
  const std::string separator = lines[1];
  CHECK(contains(separator, "-: |"));
  CHECK(separator.rfind("| ----", 0) == 0);
  CHECK(contains(lines[2], "    97.5% |"));
  // Every line has the same width in characters (× is one character in two bytes).
  auto width = [](const std::string& s) {
    return std::count_if(s.begin(), s.end(), [](char c) { return (c & 0xC0) != 0x80; });
  };
  for (const std::string& line : lines) {
    CAPTURE(line);
    CHECK(width(line) == width(lines[0]));
    CHECK(line.front() == '|');
    CHECK(line.back() == '|');
  }
}

TEST_CASE("ablate report: gnuplot data blocks and a script a user can rerun") {
  Plot plot;
  plot.title = "Bob's plot";
  plot.x_label = "length";
  plot.y_label = "seconds";
  plot.log_x = true;
  plot.log_y = true;
  plot.series = {Series{"full", {1024, 2048, 4096}, {0.5, 1.0, std::nan("")}},
                 Series{"empty", {}, {}}, Series{"LSH_8", {1024, 2048, 0}, {0.25, -1, 0.5}}};
  const std::string data = ablate::gnuplot_data(plot);
  // Two blocks (the empty series is dropped), separated by two blank lines; points gnuplot cannot
  // draw (NaN; zero or negative on a log axis) are left out.
  CHECK(contains(data, "# index 0: full\n1024 0.5\n2048 1\n\n\n# index 1: LSH_8\n1024 0.25\n"));
  CHECK(!contains(data, "nan"));
  CHECK(!contains(data, "2048 -1"));
  CHECK(!contains(data, "empty"));

  const std::string gp = ablate::gnuplot_script(plot, "speed");
  CHECK(contains(gp, "set terminal svg"));
  CHECK(contains(gp, "noenhanced"));  // "LSH_8" is a name, not a subscript
  CHECK(contains(gp, "if (!exists(\"svg_file\")) svg_file = 'speed.svg'"));
  CHECK(contains(gp, "set output svg_file"));
  CHECK(contains(gp, "set title 'Bob''s plot'"));  // a quote doubled inside a gnuplot string
  CHECK(contains(gp, "set logscale x 2"));         // lengths are powers of two
  CHECK(contains(gp, "set logscale y 10"));
  CHECK(contains(gp, "set key"));
  CHECK(contains(gp, "'speed.plot.dat' index 0 using 1:2"));
  CHECK(contains(gp, "'' index 1 using 1:2"));
  CHECK(!contains(gp, "index 2"));
  CHECK(contains(gp, "title 'LSH_8'"));

  Plot mismatched = plot;
  mismatched.series = {Series{"a", {1, 2}, {1}}};
  CHECK(error_message([&] { ablate::gnuplot_data(mismatched); }) ==
        "rewind-ablate: plot 'Bob's plot': series 'a' has 2 x values and 1 y values");
  Plot nothing = plot;
  nothing.series = {Series{"a", {-1}, {1}}};
  CHECK(error_message([&] { ablate::gnuplot_script(nothing, "x"); }) ==
        "rewind-ablate: plot 'Bob's plot' has no points to draw (1 series)");
}

TEST_CASE("ablate report: write_result writes markdown, CSV, data, script and an SVG") {
  if (!ablate::find_program("gnuplot")) {
    MESSAGE("skipped: gnuplot is not installed");
    return;
  }
  TempDir dir("ablate-report");
  RunOptions options;
  options.scale = ablate::Scale::tiny;
  options.seed = 3;
  const Result result = fake_experiment(options);
  const ablate::WrittenFiles files = ablate::write_result(result, fake_info(), dir / "");
  CHECK(dir.entries() ==
        std::vector<std::string>{"fake.csv", "fake.gp", "fake.md", "fake.plot.dat", "fake.svg"});
  CHECK(files.svg == dir / "fake.svg");
  CHECK(read_file(dir / "fake.csv") == ablate::csv_table(result.table));
  CHECK(read_file(dir / "fake.plot.dat") == ablate::gnuplot_data(*result.plot));
  CHECK(read_file(dir / "fake.gp") == ablate::gnuplot_script(*result.plot, "fake"));
  const std::string svg = read_file(dir / "fake.svg");
  CHECK(is_svg_document(svg));
  CHECK(contains(svg, "LSH_4"));  // the key names the series
  CHECK(contains(svg, "It's a fake: loss by step"));

  const std::string md = read_file(dir / "fake.md");
  CHECK(md.rfind("# Fig. 9: a fake experiment, loss against steps\n", 0) == 0);
  CHECK(contains(md, "Scale `tiny`, seed 3, 1m05s: `rewind-ablate fake --scale tiny --seed 3`."));
  CHECK(contains(md, "Two made-up curves at scale `tiny`."));
  CHECK(contains(md, ablate::markdown_table(result.table)));
  CHECK(contains(md, "![It's a fake: loss by step](fake.svg)"));
  CHECK(contains(md, "## Findings\n\nThe fake LSH curve ends below the fake full curve: yes."));

  // The script redraws the plot by hand, from its own directory.
  fs::remove(dir / "fake.svg");
  const ProcessResult by_hand = run_process(
      {"/bin/sh", "-c", "cd '" + (dir / "").string() + "' && gnuplot fake.gp"}, dir / "");
  CHECK(by_hand.exit_code == 0);
  CHECK(is_svg_document(read_file(dir / "fake.svg")));
  fs::remove(dir / "stdout.txt");
  fs::remove(dir / "stderr.txt");

  // Written again with another seed: every file is replaced, no temporary file is left.
  options.seed = 4;
  ablate::write_result(fake_experiment(options), fake_info(), dir / "");
  CHECK(contains(read_file(dir / "fake.csv"), "5.000"));
  CHECK(dir.entries().size() == 5);
  CHECK(no_temporary_files(dir));
}

TEST_CASE("ablate report: without gnuplot the other files are written and the error says so") {
  TempDir dir("ablate-nognuplot");
  TempDir empty_path("ablate-empty-path");
  const Result result = fake_experiment(RunOptions{});
  std::string message;
  {
    ScopedPath path((empty_path / "").string());
    message = error_message([&] { ablate::write_result(result, fake_info(), dir / ""); });
  }
  CHECK(contains(message, "gnuplot was not found on PATH"));
  CHECK(contains(message, "gnuplot-nox"));
  CHECK(contains(message, "fake.svg"));
  CHECK(dir.entries() ==
        std::vector<std::string>{"fake.csv", "fake.gp", "fake.md", "fake.plot.dat"});
}

TEST_CASE("ablate report: a failing gnuplot script is an error with gnuplot's message") {
  if (!ablate::find_program("gnuplot")) {
    MESSAGE("skipped: gnuplot is not installed");
    return;
  }
  TempDir dir("ablate-badplot");
  {
    std::ofstream gp(dir / "broken.gp");
    gp << "set output svg_file\nset terminal svg\nplot 'missing.plot.dat' using 1:2\n";
  }
  const std::string message = error_message([&] { ablate::render_plot(dir / "", "broken"); });
  CHECK(contains(message, "gnuplot failed (exit status 1) drawing"));
  CHECK(contains(message, "broken.gp"));
  CHECK(contains(message, "missing.plot.dat"));  // what gnuplot said
  CHECK(dir.entries() == std::vector<std::string>{"broken.gp"});
}

TEST_CASE("ablate report: result sections and REPORT.md") {
  Result result = fake_experiment(RunOptions{});
  const std::string section = ablate::result_markdown(result, fake_info(), 2);
  CHECK(section.rfind("## Fig. 9: a fake experiment, loss against steps\n", 0) == 0);
  CHECK(contains(section, "\n### Findings\n"));

  ablate::ReportHeader header;
  header.date_utc = "2026-01-02 03:04 UTC";
  header.machine = "Test CPU, 2 logical cores";
  header.scale = ablate::Scale::small;
  header.seed = 7;
  header.total_seconds = 3725;
  header.command = "rewind-ablate all --seed 7";
  ablate::ReportEntry ok{"fake", "a fake", result, "", fake_info()};
  ablate::ReportEntry failed{"speed", "Fig. 5: seconds per step", std::nullopt,
                             "out of memory at length 65536", RunInfo{}};
  failed.info.seconds = 12;
  const std::string report = ablate::report_markdown(header, {ok, failed});
  CHECK(report.rfind("# Reformer ablations\n", 0) == 0);
  CHECK(contains(report, "**Date:** 2026-01-02 03:04 UTC"));
  CHECK(contains(report, "**Machine:** Test CPU, 2 logical cores"));
  CHECK(contains(report, "**Scale:** `small`, **seed:** 7"));
  CHECK(contains(report, "**Total time:** 1h02m"));
  CHECK(contains(report, "**Command:** `rewind-ablate all --seed 7`"));
  CHECK(contains(report, "2 run, 1 failed"));
  // A contents line links each section by GitHub's anchor for its heading.
  CHECK(contains(report,
                 "- [Fig. 9: a fake experiment, loss against steps]"
                 "(#fig-9-a-fake-experiment-loss-against-steps) (1m05s)"));
  CHECK(contains(report, "- [speed: failed](#speed-failed) (12s)"));
  // The sections follow in order, the plot by its path relative to REPORT.md.
  const auto fake_at = report.find("\n## Fig. 9");
  const auto speed_at = report.find("\n## speed: failed");
  REQUIRE(fake_at != std::string::npos);
  REQUIRE(speed_at != std::string::npos);
  CHECK(fake_at < speed_at);
  CHECK(contains(report, "](fake.svg)"));
  CHECK(contains(report, "```\nout of memory at length 65536\n```"));
}

TEST_CASE("ablate report: atomic writes, command lines, registry names") {
  TempDir dir("ablate-atomic");
  ablate::write_text_atomically(dir / "a.md", "first");
  ablate::write_text_atomically(dir / "a.md", "second");
  CHECK(read_file(dir / "a.md") == "second");
  CHECK(dir.entries() == std::vector<std::string>{"a.md"});
  CHECK(contains(error_message([&] { ablate::write_text_atomically(dir / "no/such/x.md", "x"); }),
                 "cannot write"));

  const char* argv[] = {"/build/tools/ablate/rewind-ablate", "all", "--data", "my file's.txt"};
  CHECK(ablate::command_line(4, argv) == "rewind-ablate all --data 'my file'\\''s.txt'");

  CHECK(std::string(ablate::scale_name(ablate::Scale::tiny)) == "tiny");
  CHECK(std::string(ablate::scale_name(ablate::Scale::paper)) == "paper");
  // Names are subcommands and file stems: checked when registering (failed registrations add
  // nothing to the registry).
  const auto noop = [](const RunOptions& o) { return fake_experiment(o); };
  CHECK(contains(error_message([&] {
                   ablate::register_experiment({"Bad Name", "", noop});
                 }),
                 "experiment name 'Bad Name' must be lower-case letters, digits and '-'"));
  CHECK(contains(error_message([&] {
                   ablate::register_experiment({"all", "", noop});
                 }),
                 "not 'all'"));
  CHECK(error_message([&] {
          ablate::register_experiment({"duplication", "", noop});
        }) == "rewind-ablate: experiment 'duplication' is registered twice");
  // The registry is sorted by order, then name.
  const std::vector<ablate::Experiment> all = ablate::experiments();
  for (std::size_t i = 1; i < all.size(); ++i) {
    CAPTURE(all[i].name);
    CHECK((all[i - 1].order < all[i].order ||
           (all[i - 1].order == all[i].order && all[i - 1].name < all[i].name)));
  }
}

}  // namespace
}  // namespace rw::test
