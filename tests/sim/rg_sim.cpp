// rg_sim: the replay simulation (issue 4 item 6). Generates a synthetic population with incidents from a
// seed, replays it against a running rateguardd in compressed time, and prints what leaked, how fast each
// incident was contained and what legitimate mail was held or deferred, with PASS/FAIL per target.
// It does not start the daemon (tests/sim/run.sh does).
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <string>

#include "population.hpp"
#include "replay.hpp"
#include "report.hpp"

namespace {

// Exit statuses (README.md): every asserted target met; an asserted target missed; bad command line; the
// replay itself failed (daemon unreachable, requests unanswered, replay too late to be trusted).
constexpr int exit_ok = 0, exit_target_missed = 1, exit_usage = 2, exit_invalid_replay = 3;

[[noreturn]] void usage(const std::string& why) {
  std::ostream& out = why.empty() ? std::cout : std::cerr;
  if (!why.empty()) out << "rg_sim: " << why << "\n";
  out << "usage: rg_sim --connect unix:/path|inet:127.0.0.1:PORT [--json] [--assert IDS] [--label TEXT] [--note TEXT]\n"
            << "              [--answers FILE]     (every answer per message, tab-separated, with its label)\n"
            << "              [--hour-ms MS] [--connections N] [--timeout-ms MS] [--quiet] [MODEL]\n"
            << "       rg_sim --stats [--top N] [MODEL]   (the population's N busiest logins; no daemon)\n"
            << "MODEL: [--seed N] [--users N] [--warmup-days N]\n"
            << "IDS:   comma-separated target ids: incident-A, -B, -C, -D1, -D2, -E; legit-held, legit-deferred (issue 4's\n"
            << "       classes); all-legit-held, all-legit-deferred (every legitimate class); all\n"
            << "exit:  0 asserted targets met, 1 one missed, 2 usage, 3 replay not valid (see tests/sim/README.md)\n";
  std::exit(why.empty() ? exit_ok : exit_usage);
}

}  // namespace

int main(int argc, char** argv) {
  rg::sim::model_options model;
  rg::sim::replay_options replay;
  rg::sim::report_options rep;
  bool json = false, stats = false;
  std::string answers_file;
  unsigned top = 10;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage(a + " needs a value");
      return argv[++i];
    };
    try {
      if (a == "--help" || a == "-h") usage("");
      else if (a == "--connect") replay.connect = value();
      else if (a == "--hour-ms") replay.hour_ms = std::stod(value());
      else if (a == "--connections") replay.connections = static_cast<unsigned>(std::stoul(value()));
      else if (a == "--timeout-ms") replay.timeout_ms = static_cast<unsigned>(std::stoul(value()));
      else if (a == "--quiet") replay.progress = false;
      else if (a == "--json") json = true;
      else if (a == "--stats") stats = true;
      else if (a == "--top") top = static_cast<unsigned>(std::stoul(value()));
      else if (a == "--label") rep.label = value();
      else if (a == "--note") rep.notes.push_back(value());
      else if (a == "--answers") answers_file = value();
      else if (a == "--seed") model.seed = std::stoull(value());
      else if (a == "--users") model.users = static_cast<unsigned>(std::stoul(value()));
      else if (a == "--warmup-days") model.warmup_days = static_cast<unsigned>(std::stoul(value()));
      else if (a == "--assert") {
        std::stringstream ids(value());
        for (std::string id; std::getline(ids, id, ',');)
          if (!id.empty()) rep.asserted.insert(id);
      } else usage("unknown option " + a);
    } catch (const std::logic_error&) {
      usage("bad value for " + a);
    }
  }
  if (model.users < 1 || model.users > 10000) usage("--users must be 1..10000");
  if (model.warmup_days > 30) usage("--warmup-days must be 0..30");
  if (replay.hour_ms < 100 || replay.hour_ms > 3600000) usage("--hour-ms must be 100..3600000");
  if (replay.connections < 1 || replay.connections > 1000) usage("--connections must be 1..1000");
  if (replay.timeout_ms < 10 || replay.timeout_ms > 60000) usage("--timeout-ms must be 10..60000");

  const rg::sim::population pop = rg::sim::generate(model);
  for (const auto& id : rep.asserted) {
    bool known = id == "all" || id == "legit-held" || id == "legit-deferred" || id == "all-legit-held" ||
                 id == "all-legit-deferred";
    for (const auto& inc : pop.incidents) known = known || id == "incident-" + inc.id;
    if (!known) usage("unknown target id " + id);
  }
  if (stats) {
    std::cout << rg::sim::peaks_text(pop, rg::sim::population_peaks(pop, top));
    return exit_ok;
  }
  if (replay.connect.empty()) usage("--connect is required");
  rep.hour_ms = replay.hour_ms;
  rep.connections = replay.connections;
  rg::sim::replay_result res;
  try {
    res = rg::sim::replay(pop, replay);
  } catch (const std::invalid_argument& e) {
    usage(e.what());
  }
  const rg::sim::report r = rg::sim::make_report(pop, res, rep);
  if (json) std::cout << rg::sim::to_json(r);
  else std::cout << rg::sim::peaks_text(pop, r.peaks) << "\n" << rg::sim::to_text(r);
  if (!answers_file.empty()) {
    std::ofstream f(answers_file);
    rg::sim::write_answers(f, pop, res);
    if (!f.flush()) {
      std::cerr << "rg_sim: cannot write " << answers_file << "\n";
      return exit_usage;
    }
  }
  if (!r.valid) return exit_invalid_replay;
  return r.asserted_met() ? exit_ok : exit_target_missed;
}
