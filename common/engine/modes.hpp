// How the engine answers: enforce or only log (dry-run), and what to answer when the store fails. Shared by the
// engine, which acts on them, and the daemon's settings, which name them; standard library only.
#pragma once

#include <cstdint>

namespace rg {

enum class run_mode : std::uint8_t { enforce, dry_run };
enum class store_error_action : std::uint8_t { dunno, defer };

}  // namespace rg
