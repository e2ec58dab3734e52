// `crmstream replay`: a JSON-lines or CSV file through the same pipeline,
// without Kafka, with a progress bar. Outputs go to a folder of JSON-lines
// files (one per output topic), or nowhere (--discard) for benchmarks.
#include <unistd.h>

#include <cstdio>
#include <iostream>

#include "cli_support.h"
#include "commands.h"
#include "crmstream/pipeline/replay.h"

namespace crmstream::cli {
namespace {

struct ReplayCliOptions {
  std::string input;
  std::string pipeline = "pipelines/crm.yaml";
  std::string format = "auto";
  std::string out_dir = "out/replay";
  bool discard = false;
  bool quiet = false;
};

void DrawProgress(uint64_t done, uint64_t total) {
  const int width = 40;
  const double frac = total ? static_cast<double>(done) / static_cast<double>(total) : 1.0;
  const int filled = static_cast<int>(frac * width);
  std::fprintf(stderr, "\r[%-*s] %5.1f%%", width, std::string(filled, '#').c_str(), frac * 100);
  std::fflush(stderr);
}

int RunReplay(const ReplayCliOptions& o) {
  auto spec = config::LoadPipelineSpec(o.pipeline);
  if (!spec.ok()) return Fail("replay", spec.status());
  auto options = pipeline::ProcessorOptions::FromPipeline(*spec);
  if (Status st = options.Validate(); !st.ok()) return Fail("replay", st.WithContext(o.pipeline));

  pipeline::DiscardingSink discard;
  std::unique_ptr<pipeline::FileSink> files;
  pipeline::OutputSink* sink = &discard;
  if (!o.discard) {
    auto opened = pipeline::FileSink::Open(o.out_dir);
    if (!opened.ok()) return Fail("replay", opened.status());
    files = std::move(opened).value();
    sink = files.get();
  }
  pipeline::EventProcessor processor(options, sink);
  pipeline::ReplayOptions ro;
  ro.input = o.input;
  ro.format = o.format == "csv"    ? pipeline::InputFormat::kCsv
              : o.format == "json" ? pipeline::InputFormat::kJsonLines
                                   : pipeline::InputFormat::kAuto;
  if (!o.quiet && isatty(STDERR_FILENO)) ro.progress = DrawProgress;
  auto stats = pipeline::Replay(ro, &processor);
  if (ro.progress) std::fputc('\n', stderr);
  if (!stats.ok()) return Fail("replay", stats.status());
  if (files) {
    if (Status st = files->Close(); !st.ok()) return Fail("replay", st);
  }
  std::printf(
      "replayed %llu records in %.3f s (%.0f records/s): %llu accepted, %llu duplicates, "
      "%llu rejected; %zu customers%s%s\n",
      static_cast<unsigned long long>(stats->records), stats->seconds,
      stats->seconds > 0 ? static_cast<double>(stats->records) / stats->seconds : 0.0,
      static_cast<unsigned long long>(stats->accepted),
      static_cast<unsigned long long>(stats->duplicates),
      static_cast<unsigned long long>(stats->rejected), processor.feature_store().size(),
      files ? "; outputs in " : "", files ? o.out_dir.c_str() : "");
  return 0;
}

}  // namespace

void AddReplayCommand(CLI::App* app, int* exit_code) {
  auto* cmd = app->add_subcommand(
      "replay", "Run a JSON-lines or CSV file through the pipeline without Kafka");
  auto o = std::make_shared<ReplayCliOptions>();
  cmd->add_option("input", o->input, "JSON-lines or CSV file")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_option("-p,--pipeline", o->pipeline, "Pipeline definition")->capture_default_str();
  cmd->add_option("--format", o->format, "auto, json or csv")
      ->check(CLI::IsMember({"auto", "json", "csv"}))
      ->capture_default_str();
  cmd->add_option("-o,--out", o->out_dir, "Folder for the output JSON-lines files")
      ->capture_default_str();
  cmd->add_flag("--discard", o->discard, "Count outputs but write nothing (benchmarks)");
  cmd->add_flag("-q,--quiet", o->quiet, "No progress bar");
  cmd->callback([=] { *exit_code = RunReplay(*o); });
}

}  // namespace crmstream::cli
