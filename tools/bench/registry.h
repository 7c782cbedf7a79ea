#pragma once
// rewind-bench subcommands. Each lives in its own file and registers itself at start-up:
//   static const bool registered = register_subcommand({"ops", "...", setup});
// so a new benchmark (memory, attention, model) is a new file with no list to edit.
#include <functional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "report.h"

namespace rw::bench {

// What a chosen subcommand runs: its results as tables.
using RunFn = std::function<std::vector<Table>()>;
// Adds the subcommand's own flags to `cmd` (bound to state the returned RunFn keeps).
using SetupFn = std::function<RunFn(CLI::App& cmd)>;

struct Subcommand {
  std::string name;
  std::string description;
  SetupFn setup;
};

bool register_subcommand(Subcommand subcommand);
const std::vector<Subcommand>& subcommands();

}  // namespace rw::bench
