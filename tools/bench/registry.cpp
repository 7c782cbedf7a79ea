#include "registry.h"

namespace rw::bench {
namespace {

// A function-local static: registrations run during static initialisation of other files, in no
// particular order, so the list must exist before the first of them.
std::vector<Subcommand>& registry() {
  static std::vector<Subcommand> list;
  return list;
}

}  // namespace

bool register_subcommand(Subcommand subcommand) {
  registry().push_back(std::move(subcommand));
  return true;
}

const std::vector<Subcommand>& subcommands() { return registry(); }

}  // namespace rw::bench
