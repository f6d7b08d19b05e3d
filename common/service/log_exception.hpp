// The completion of every coroutine a front or the service spawns: an exception that escaped it is logged as an
// error with what it was doing, never lost and never fatal to the daemon (one connection or one journal write
// ends, the rest go on).
#pragma once

#include <exception>
#include <spdlog/spdlog.h>

namespace rg {

inline void log_exception(std::exception_ptr e, const char* what) {
  if (!e) return;
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    spdlog::error("{}: unexpected exception: {}", what, ex.what());
  }
}

}  // namespace rg
