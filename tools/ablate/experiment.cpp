#include "ablate/experiment.h"

#include <algorithm>

#include "core/error.h"

namespace rw::ablate {
namespace {

// A function-local static: experiments register from other files' static initialisers, which may
// run before any namespace-scope registry of this file would be constructed.
std::vector<Experiment>& registry() {
  static std::vector<Experiment> all;
  return all;
}

// The name is a subcommand and a file stem: keep it to what needs no quoting in either.
bool valid_name(const std::string& name) {
  if (name.empty() || name == "all" || name.front() == '-') return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
  });
}

}  // namespace

const char* scale_name(Scale scale) {
  switch (scale) {
    case Scale::tiny:
      return "tiny";
    case Scale::small:
      return "small";
    case Scale::paper:
      return "paper";
  }
  return "unknown";
}

bool register_experiment(Experiment experiment) {
  RW_CHECK(valid_name(experiment.name),
           "rewind-ablate: experiment name '{}' must be lower-case letters, digits and '-', and "
           "not 'all'",
           experiment.name);
  RW_CHECK(static_cast<bool>(experiment.run), "rewind-ablate: experiment '{}' has no run function",
           experiment.name);
  for (const Experiment& e : registry()) {
    RW_CHECK(e.name != experiment.name, "rewind-ablate: experiment '{}' is registered twice",
             experiment.name);
  }
  registry().push_back(std::move(experiment));
  return true;
}

std::vector<Experiment> experiments() {
  std::vector<Experiment> sorted = registry();
  std::stable_sort(sorted.begin(), sorted.end(), [](const Experiment& a, const Experiment& b) {
    return a.order != b.order ? a.order < b.order : a.name < b.name;
  });
  return sorted;
}

}  // namespace rw::ablate
