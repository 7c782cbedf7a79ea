#pragma once
// SIGINT and SIGTERM as a request to stop cleanly: the handler only sets a flag, which long loops
// poll between steps, so a run killed politely writes its checkpoint and exits instead of dying
// mid-write. A second signal of the same kind while stopping kills the process (the default
// action is restored after the first).
namespace rw::tools {

void install_stop_handlers();
bool stop_requested();
// The signal that asked to stop (SIGINT or SIGTERM), 0 if none.
int stop_signal();
// The exit status a process stopped by `signal` reports by convention (128 + signal).
inline int exit_status_for_signal(int signal) { return 128 + signal; }

}  // namespace rw::tools
