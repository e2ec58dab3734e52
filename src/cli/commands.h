// Each subcommand registers itself on the app and returns its exit code
// through the callback it installs. main() wires them together.
#pragma once

#include <CLI/CLI.hpp>

namespace crmstream::cli {

// Every command sets *exit_code when it runs.
void AddRunCommand(CLI::App* app, int* exit_code);
void AddBrokerCommand(CLI::App* app, int* exit_code);
void AddGenerateCommand(CLI::App* app, int* exit_code);
void AddReplayCommand(CLI::App* app, int* exit_code);
void AddEvalCommand(CLI::App* app, int* exit_code);
void AddStateCommand(CLI::App* app, int* exit_code);
void AddDashboardCommand(CLI::App* app, int* exit_code);

}  // namespace crmstream::cli
