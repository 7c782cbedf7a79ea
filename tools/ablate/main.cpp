// rewind-ablate: reproduces the Reformer paper's experiments, one subcommand each, writing a
// markdown table, a CSV and a gnuplot plot per experiment; `all` runs every one and collects them
// in REPORT.md.
//
//   rewind-ablate duplication                      # Table 2 at the small scale, into ablations/
//   rewind-ablate speed --scale tiny --out /tmp/a  # seconds, for a smoke test
//   rewind-ablate all --scale small --out docs/ablations
//
// Training runs keep checkpoints under <out>/<experiment>/, so the same command after a kill
// (Ctrl-C, SIGTERM) resumes where it stopped.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include "ablate/experiment.h"
#include "ablate/report.h"
#include "common/progress.h"
#include "common/stop_signal.h"
#include "core/error.h"

namespace {

namespace fs = std::filesystem;
using namespace rw::ablate;

// The flags every subcommand takes (the same variables: one subcommand runs per invocation).
struct Flags {
  std::string scale_text = "small";
  Scale scale = Scale::small;  // scale_text, once parsed
  uint64_t seed = 0;
  fs::path out = "ablations";
  std::string data;
  std::string device = "cpu";
  bool progress = true;
};

void add_flags(CLI::App& command, Flags& flags) {
  command
      .add_option("--scale", flags.scale_text,
                  "tiny (seconds: a smoke test), small (a 2-core CPU, up to ~30 minutes per "
                  "experiment, reductions stated in each report) or paper (the paper's settings, "
                  "for a GPU)")
      ->check(CLI::IsMember({"tiny", "small", "paper"}))
      ->capture_default_str();
  command.add_option("--seed", flags.seed, "seed of parameters, data and hashing")
      ->check(CLI::Validator(
          [](std::string& value) {
            const bool digits =
                !value.empty() && value.find_first_not_of("0123456789") == std::string::npos;
            return digits ? std::string() : "must be a non-negative integer, not '" + value + "'";
          },
          "UINT"))
      ->capture_default_str();
  command
      .add_option("--out", flags.out,
                  "output directory: <name>.md/.csv/.svg here, checkpoints in <out>/<name>/")
      ->capture_default_str();
  command
      .add_option("--data", flags.data,
                  "text corpus of the language-modelling experiments (default: the built-in "
                  "corpus)")
      ->check(CLI::ExistingFile);
  command.add_option("--device", flags.device, "cpu, cuda or cuda:N")->capture_default_str();
  command.add_flag("--progress,!--no-progress", flags.progress, "progress bars on stderr");
}

std::string experiment_names(const std::vector<Experiment>& all) {
  std::string names;
  for (const Experiment& e : all) names += e.name + ", ";
  return names + "all";
}

// The command that reruns one experiment of an `all` run on its own.
std::string single_command(const std::string& name, const Flags& flags) {
  std::vector<std::string> args{"rewind-ablate", name,
                                "--scale",       scale_name(flags.scale),
                                "--seed",        std::to_string(flags.seed),
                                "--out",         flags.out.string()};
  if (!flags.data.empty()) args.insert(args.end(), {"--data", flags.data});
  if (flags.device != "cpu") args.insert(args.end(), {"--device", flags.device});
  std::vector<const char*> argv;
  for (const std::string& a : args) argv.push_back(a.c_str());
  return command_line(static_cast<int>(argv.size()), argv.data());
}

// Runs one experiment and writes its files; the entry holds the error instead when it failed.
// `stopped` is set when SIGINT/SIGTERM arrived: then nothing is written.
ReportEntry run_experiment(const Experiment& experiment, const Flags& flags, rw::Device device,
                           const std::string& command, bool& stopped) {
  ReportEntry entry;
  entry.name = experiment.name;
  entry.description = experiment.description;
  entry.info = RunInfo{flags.scale, flags.seed, 0, command};
  RunOptions options;
  options.scale = flags.scale;
  options.seed = flags.seed;
  options.work_dir = flags.out / experiment.name;
  options.data = flags.data;
  options.device = device;
  options.progress = flags.progress;
  const auto start = std::chrono::steady_clock::now();
  auto elapsed = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };
  std::fprintf(stderr, "rewind-ablate: %s (scale %s, seed %llu; work directory %s)\n",
               experiment.name.c_str(), scale_name(flags.scale),
               static_cast<unsigned long long>(flags.seed), options.work_dir.c_str());
  try {
    fs::create_directories(options.work_dir);
    Result result = experiment.run(options);
    entry.info.seconds = elapsed();
    // A stopped experiment returns early with what it had: that is no result to publish.
    if (rw::tools::stop_requested()) {
      stopped = true;
      return entry;
    }
    if (result.name.empty()) result.name = experiment.name;
    RW_CHECK(result.name == experiment.name,
             "experiment '{}' returned a result named '{}' (the names must match)", experiment.name,
             result.name);
    const WrittenFiles files = write_result(result, entry.info, flags.out);
    std::printf("\n%s\n\n%s\n", result.title.c_str(), markdown_table(result.table).c_str());
    if (!result.findings.empty()) std::printf("%s\n\n", result.findings.c_str());
    std::printf("wrote %s, %s", files.markdown.c_str(), files.csv.c_str());
    if (!files.svg.empty()) {
      std::printf(", %s (gnuplot %s)", files.svg.c_str(), files.plot_script.c_str());
    }
    std::printf("; the run took %s\n", rw::tools::format_duration(entry.info.seconds).c_str());
    std::fflush(stdout);
    entry.result = std::move(result);
  } catch (const std::exception& e) {
    entry.info.seconds = elapsed();
    stopped = rw::tools::stop_requested();
    entry.error = e.what();
  }
  return entry;
}

int report_stop(const std::string& name, const Flags& flags) {
  std::fprintf(stderr,
               "rewind-ablate: stopped by signal %d during %s; nothing was written for it. Run "
               "the same command again to resume from the checkpoints in %s\n",
               rw::tools::stop_signal(), name.c_str(), (flags.out / name).c_str());
  return rw::tools::exit_status_for_signal(rw::tools::stop_signal());
}

int run_one(const Experiment& experiment, const Flags& flags, rw::Device device,
            const std::string& command) {
  bool stopped = false;
  ReportEntry entry = run_experiment(experiment, flags, device, command, stopped);
  if (stopped) return report_stop(experiment.name, flags);
  if (!entry.result) {
    std::fprintf(stderr, "rewind-ablate: error: %s: %s\n", experiment.name.c_str(),
                 entry.error.c_str());
    return 1;
  }
  return 0;
}

int run_all(const std::vector<Experiment>& all, const Flags& flags, rw::Device device,
            const std::string& command) {
  const auto start = std::chrono::steady_clock::now();
  ReportHeader header;
  header.date_utc = utc_now();
  header.machine = machine_description();
  header.scale = flags.scale;
  header.seed = flags.seed;
  header.command = command;
  std::vector<ReportEntry> entries;
  std::vector<std::string> failed;
  for (const Experiment& experiment : all) {
    bool stopped = false;
    entries.push_back(
        run_experiment(experiment, flags, device, single_command(experiment.name, flags), stopped));
    if (stopped) return report_stop(experiment.name, flags);
    if (!entries.back().result) {
      std::fprintf(stderr, "rewind-ablate: error: %s failed: %s\n", experiment.name.c_str(),
                   entries.back().error.c_str());
      failed.push_back(experiment.name);
    }
  }
  header.total_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const fs::path report = flags.out / "REPORT.md";
  write_text_atomically(report, report_markdown(header, entries));
  std::printf("\nwrote %s (%zu experiments in %s)\n", report.c_str(), entries.size(),
              rw::tools::format_duration(header.total_seconds).c_str());
  if (!failed.empty()) {
    std::string names;
    for (const std::string& n : failed) names += (names.empty() ? "" : ", ") + n;
    std::fprintf(stderr, "rewind-ablate: error: %zu of %zu experiments failed: %s (see %s)\n",
                 failed.size(), entries.size(), names.c_str(), report.c_str());
    return 1;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::vector<Experiment> all = experiments();
  CLI::App app{
      "rewind-ablate: reproduce the Reformer paper's experiments, each as a markdown table, a CSV "
      "and a plot"};
  app.footer(
      "Run `rewind-ablate <experiment> --help` for its options (--scale, --seed, --out, --data, "
      "--device, --no-progress).\nA killed run resumes from its checkpoints when the same command "
      "runs again.");
  app.require_subcommand(0, 1);
  Flags flags;
  std::vector<std::pair<CLI::App*, const Experiment*>> commands;
  for (const Experiment& e : all) {
    CLI::App* command = app.add_subcommand(e.name, e.description);
    add_flags(*command, flags);
    commands.emplace_back(command, &e);
  }
  CLI::App* all_command =
      app.add_subcommand("all", "every experiment above in turn, then REPORT.md collecting them");
  add_flags(*all_command, flags);

  // CLI11 would call an unknown experiment "an argument that was not expected": name it plainly.
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "-h" || arg == "--help") continue;
    if (!arg.empty() && arg.front() == '-') {
      std::fprintf(stderr,
                   "rewind-ablate: error: %s before the experiment: options follow its name, as "
                   "in `rewind-ablate duplication --scale tiny`\n",
                   arg.c_str());
      return 1;
    }
    const bool known =
        arg == "all" ||
        std::any_of(all.begin(), all.end(), [&](const Experiment& e) { return e.name == arg; });
    if (!known) {
      std::fprintf(stderr,
                   "rewind-ablate: error: unknown experiment '%s'; the experiments are: %s\n",
                   arg.c_str(), experiment_names(all).c_str());
      return 1;
    }
    break;  // the first word is the experiment; later words are its options' values
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help
    std::fprintf(stderr, "rewind-ablate: error: %s\nRun with --help for the options.\n", e.what());
    return 1;
  }

  try {
    flags.scale = flags.scale_text == "tiny"    ? Scale::tiny
                  : flags.scale_text == "paper" ? Scale::paper
                                                : Scale::small;
    const rw::Device device = rw::Device::parse(flags.device);
    const std::string command = command_line(argc, const_cast<const char* const*>(argv));
    rw::tools::install_stop_handlers();
    fs::create_directories(flags.out);
    if (all_command->parsed()) return run_all(all, flags, device, command);
    for (const auto& [sub, experiment] : commands) {
      if (sub->parsed()) return run_one(*experiment, flags, device, command);
    }
    std::fprintf(stderr, "rewind-ablate: error: name an experiment to run: %s\n%s",
                 experiment_names(all).c_str(), app.help().c_str());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "rewind-ablate: error: %s\n", e.what());
    return 1;
  }
}
