// `crmstream eval telco|retail|nab`: the models on the public data sets,
// each figure printed beside the published one.
#include <filesystem>
#include <iostream>

#include "cli_support.h"
#include "commands.h"
#include "crmstream/evaluation/nab.h"
#include "crmstream/evaluation/retail.h"
#include "crmstream/evaluation/telco.h"

namespace crmstream::cli {
namespace {

struct EvalOptions {
  std::string what;
  std::string data_dir = "../shared/data";
  std::string nab_results;  // optional folder for per-row NAB scores
};

int RunEval(const EvalOptions& o) {
  if (!std::filesystem::is_directory(o.data_dir)) {
    return Fail("eval", Status::NotFound(o.data_dir + ": no data folder (give --data DIR)"));
  }
  if (o.what == "telco") {
    auto r = evaluation::EvaluateTelco(o.data_dir);
    if (!r.ok()) return Fail("eval", r.status());
    evaluation::PrintTelcoReport(*r, std::cout);
  } else if (o.what == "retail") {
    auto r = evaluation::EvaluateRetail(o.data_dir);
    if (!r.ok()) return Fail("eval", r.status());
    evaluation::PrintRetailReport(*r, std::cout);
  } else {
    std::optional<std::filesystem::path> out;
    if (!o.nab_results.empty()) out = o.nab_results;
    auto r = evaluation::EvaluateNab(o.data_dir, out);
    if (!r.ok()) return Fail("eval", r.status());
    evaluation::PrintNabReport(*r, std::cout);
  }
  return 0;
}

}  // namespace

void AddEvalCommand(CLI::App* app, int* exit_code) {
  auto* cmd = app->add_subcommand(
      "eval", "Evaluate the online models on the public data sets against published figures");
  auto o = std::make_shared<EvalOptions>();
  cmd->add_option("what", o->what, "telco, retail or nab")
      ->required()
      ->check(CLI::IsMember({"telco", "retail", "nab"}));
  cmd->add_option("--data", o->data_dir, "Folder of the public data sets")->capture_default_str();
  cmd->add_option("--nab-results", o->nab_results,
                  "With nab: write per-row scores as <category>/<detector>_<file>.csv here");
  cmd->callback([=] { *exit_code = RunEval(*o); });
}

}  // namespace crmstream::cli
