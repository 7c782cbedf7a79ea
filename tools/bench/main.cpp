// rewind-bench: performance measurements of rewind, one subcommand per benchmark (see
// registry.h). Results go to stdout or --out FILE as markdown or CSV; progress goes to stderr.
#include <cstdio>
#include <fstream>
#include <map>

#include "core/error.h"
#include "registry.h"

int main(int argc, char** argv) {
  using namespace rw::bench;
  CLI::App app{"rewind-bench: measure rewind's kernels and ops"};
  app.require_subcommand(1);
  app.fallthrough();  // --format and --out may also follow the subcommand
  std::string format = "md";
  std::string out_path;
  app.add_option("--format", format, "output format")
      ->check(CLI::IsMember({"md", "csv", "json"}))
      ->capture_default_str();
  app.add_option("--out", out_path, "write the results to FILE instead of stdout");
  std::map<std::string, RunFn> runs;
  for (const Subcommand& s : subcommands()) {
    CLI::App* cmd = app.add_subcommand(s.name, s.description);
    runs[s.name] = s.setup(*cmd);
  }
  CLI11_PARSE(app, argc, argv);
  try {
    const std::string chosen = app.get_subcommands().front()->get_name();
    std::vector<Table> tables = runs.at(chosen)();
    std::string text =
        render(tables, run_info(argc, argv),
               format == "csv" ? Format::csv : (format == "json" ? Format::json : Format::md));
    if (out_path.empty()) {
      std::fputs(text.c_str(), stdout);
    } else {
      std::ofstream out(out_path);
      out << text;
      if (!out) {
        std::fprintf(stderr, "rewind-bench: error: cannot write %s\n", out_path.c_str());
        return 1;
      }
    }
    return 0;
  } catch (const rw::Error& e) {
    std::fprintf(stderr, "rewind-bench: error: %s\n", e.what());
    return 1;
  }
}
