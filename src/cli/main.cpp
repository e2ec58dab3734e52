// crmstream: the single binary. Subcommands: run, broker, generate, replay, eval, state,
// dashboard.
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <cstdlib>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "commands.h"

int main(int argc, char** argv) {
#if defined(__GLIBC__)
  // glibc gives each thread that allocates its own arena (up to 8 per core),
  // and memory freed in one is not reused by the others: with librdkafka's
  // broker threads that held about 8 MiB of a 96 MiB memory cap apart. Two
  // arenas, before any thread starts, unless the user chose otherwise.
  if (std::getenv("MALLOC_ARENA_MAX") == nullptr) mallopt(M_ARENA_MAX, 2);
#endif
  CLI::App app{"crmstream: streaming customer analytics over Kafka"};
  app.require_subcommand(1);
  std::string log_level = "info";
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error, off")
      ->capture_default_str();
  app.parse_complete_callback([&] { spdlog::set_level(spdlog::level::from_str(log_level)); });
  int exit_code = 0;
  crmstream::cli::AddRunCommand(&app, &exit_code);
  crmstream::cli::AddBrokerCommand(&app, &exit_code);
  crmstream::cli::AddGenerateCommand(&app, &exit_code);
  crmstream::cli::AddReplayCommand(&app, &exit_code);
  crmstream::cli::AddEvalCommand(&app, &exit_code);
  crmstream::cli::AddStateCommand(&app, &exit_code);
  crmstream::cli::AddDashboardCommand(&app, &exit_code);
  CLI11_PARSE(app, argc, argv);
  return exit_code;
}
