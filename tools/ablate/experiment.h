#pragma once
// rewind-ablate's experiments: each reproduces one result of the Reformer paper and returns it as
// a Result (a table, an optional plot, and text), which report.h writes as markdown, CSV and a
// gnuplot plot. Each experiment lives in its own file and registers itself at start-up:
//
//   static const bool registered = rw::ablate::register_experiment(
//       {"duplication", "Table 2: ...", run_duplication});
//
// so `rewind-ablate duplication` runs it and `rewind-ablate all` runs every one, in registration
// order sorted by Experiment::order.
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "core/device.h"

namespace rw::ablate {

// How big a run is. tiny: seconds, for the CLI tests; small: a 2-core laptop CPU, each experiment
// within about 30 minutes, with the reductions from the paper stated in Result::settings; paper:
// the paper's settings, for a GPU.
enum class Scale { tiny, small, paper };
const char* scale_name(Scale scale);

struct RunOptions {
  Scale scale = Scale::small;
  uint64_t seed = 0;
  // The experiment's own directory (<out>/<experiment name>/), created before it runs: training
  // runs keep their checkpoints and logs under it, so a killed experiment resumes where it was.
  std::filesystem::path work_dir;
  // The text corpus of the language-modelling experiments; empty: the default corpus.
  std::string data;
  Device device = Device::cpu();
  bool progress = true;  // progress bars on stderr
};

// A table: written as <name>.csv and as a markdown table. Cells are already formatted.
struct Table {
  std::vector<std::string> columns;
  std::vector<std::vector<std::string>> rows;
};

// A line plot: written as <name>.gp (a gnuplot script reading <name>.plot.dat) and rendered by
// gnuplot to <name>.svg.
struct Series {
  std::string name;
  std::vector<double> x, y;
};
struct Plot {
  std::string title, x_label, y_label;
  bool log_x = false, log_y = false;
  std::vector<Series> series;
};

struct Result {
  std::string name;   // file stem, and the subcommand: "duplication" (empty: the experiment's)
  std::string title;  // "Table 2: duplication task, accuracy by training and evaluation attention"
  std::string settings;  // markdown: what ran at this scale, and how it differs from the paper
  Table table;
  std::optional<Plot> plot;
  // Markdown: what the numbers show next to the paper's finding. Computed from the numbers (e.g.
  // "accuracy rises with evaluation hash rounds for every LSH-trained model: yes"), never canned.
  std::string findings;
};

struct Experiment {
  std::string name;         // the subcommand
  std::string description;  // its --help line
  // Runs the experiment. When rw::tools::stop_requested() (SIGINT/SIGTERM; the Trainer then
  // checkpoints and returns) it should return soon with whatever it has: the tool then writes
  // nothing and exits with the signal's status, and the same command later resumes from
  // work_dir. An exception is the experiment's error: `all` reports it and goes on.
  std::function<Result(const RunOptions&)> run;
  int order = 0;  // position in `all` and in REPORT.md (ascending)
};

// Adds an experiment; returns true, for a static initialiser. Throws rw::Error for a name that is
// not lower-case letters, digits and '-', for "all", or for a name registered twice.
bool register_experiment(Experiment experiment);
// Sorted by order, then name.
std::vector<Experiment> experiments();

}  // namespace rw::ablate
