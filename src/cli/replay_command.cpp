// `crmstream replay`: a JSON-lines or CSV file through the same pipeline,
// without Kafka, with a progress bar. Outputs go to a folder of JSON-lines
// files (one per output topic), or nowhere (--discard) for benchmarks.
// A feed pipeline (a file with a `source:` section, see
// include/crmstream/feeds/feed_spec.h) maps a foreign data set onto the
// engine: events, a labelled table, or metric series.
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <iostream>

#include "cli_support.h"
#include "commands.h"
#include "crmstream/feeds/event_feed.h"
#include "crmstream/feeds/series_feed.h"
#include "crmstream/feeds/table_feed.h"
#include "crmstream/pipeline/pipeline_spec.h"
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

void PrintStats(uint64_t records, double seconds, uint64_t accepted, uint64_t duplicates,
                uint64_t rejected, size_t customers, const ReplayCliOptions& o, bool files) {
  std::printf(
      "replayed %llu records in %.3f s (%.0f records/s): %llu accepted, %llu duplicates, "
      "%llu rejected; %zu customers%s%s\n",
      static_cast<unsigned long long>(records), seconds,
      seconds > 0 ? static_cast<double>(records) / seconds : 0.0,
      static_cast<unsigned long long>(accepted), static_cast<unsigned long long>(duplicates),
      static_cast<unsigned long long>(rejected), customers, files ? "; outputs in " : "",
      files ? o.out_dir.c_str() : "");
}

// The outputs of a replay: JSON-lines files, or counted and dropped.
struct ReplaySinks {
  pipeline::DiscardingSink discard;
  std::unique_ptr<pipeline::FileSink> files;
  pipeline::OutputSink* sink = &discard;

  Status Open(const ReplayCliOptions& o) {
    if (o.discard) return Status::OK();
    CRM_ASSIGN_OR_RETURN(files, pipeline::FileSink::Open(o.out_dir));
    sink = files.get();
    return Status::OK();
  }
};

int RunEventFeed(const ReplayCliOptions& o, const feeds::FeedSpec& feed) {
  const std::string pipeline_file = feeds::ResolvePipelinePath(feed).string();
  auto spec = pipeline::LoadPipelineSpec(pipeline_file);
  if (!spec.ok()) return Fail("replay", spec.status().WithContext(feed.file));
  const pipeline::ProcessorOptions& options = spec->processor;
  ReplaySinks sinks;
  if (Status st = sinks.Open(o); !st.ok()) return Fail("replay", st);
  auto created = pipeline::EventProcessor::Create(options, sinks.sink);
  if (!created.ok()) return Fail("replay", created.status().WithContext(pipeline_file));
  pipeline::EventProcessor& processor = **created;
  std::function<void(uint64_t, uint64_t)> progress;
  if (!o.quiet && isatty(STDERR_FILENO)) progress = DrawProgress;
  auto stats = feeds::RunEventFeed(feed, o.input, &processor, progress);
  if (progress) std::fputc('\n', stderr);
  if (!stats.ok()) return Fail("replay", stats.status());
  if (sinks.files) {
    if (Status st = sinks.files->Close(); !st.ok()) return Fail("replay", st);
  }
  PrintStats(stats->records, stats->seconds, stats->accepted, stats->duplicates, stats->rejected,
             processor.feature_store().size(), o, sinks.files != nullptr);
  return 0;
}

int RunTableFeed(const ReplayCliOptions& o, const feeds::FeedSpec& feed) {
  std::ofstream scores;
  const std::string scores_path = o.out_dir + "/scores.csv";
  if (!o.discard) {
    std::error_code ec;
    std::filesystem::create_directories(o.out_dir, ec);
    scores.open(scores_path, std::ios::binary | std::ios::trunc);
    if (!scores) return Fail("replay", Status::IOError("cannot write " + scores_path));
    scores << "id,churn_probability,label\n";
  }
  auto report = feeds::RunTableFeed(feed, o.input, [&](std::string_view id, double p, bool label) {
    if (scores.is_open()) scores << id << ',' << p << ',' << (label ? 1 : 0) << '\n';
  });
  if (!report.ok()) return Fail("replay", report.status());
  std::printf(
      "%s: %llu rows (%llu positive), %d features, one pass, predict then train: prequential "
      "ROC-AUC %.4f, log loss %.4f%s%s\n",
      feed.name.c_str(), static_cast<unsigned long long>(report->rows),
      static_cast<unsigned long long>(report->positives), report->features, report->auc,
      report->log_loss, scores.is_open() ? "; scores in " : "",
      scores.is_open() ? scores_path.c_str() : "");
  if (!report->last_explanation.empty()) {
    std::printf("last row's score, top contributions:");
    for (const auto& [name, c] : report->last_explanation)
      std::printf(" %s %+.3f", name.c_str(), c);
    std::printf("\n");
  }
  return 0;
}

int RunSeriesFeed(const ReplayCliOptions& o, const feeds::FeedSpec& feed) {
  auto report = feeds::RunSeriesFeed(feed, o.input, o.out_dir);
  if (!report.ok()) return Fail("replay", report.status());
  std::printf("%s: %llu series, %llu rows scored (%llu not numeric); scores in %s\n",
              feed.name.c_str(), static_cast<unsigned long long>(report->series),
              static_cast<unsigned long long>(report->rows),
              static_cast<unsigned long long>(report->skipped_rows), o.out_dir.c_str());
  if (report->nab) evaluation::PrintNabReport(*report->nab, std::cout);
  return 0;
}

int RunFeed(const ReplayCliOptions& o) {
  auto feed = feeds::LoadFeedSpec(o.pipeline);
  if (!feed.ok()) return Fail("replay", feed.status());
  switch (feed->kind) {
    case feeds::FeedKind::kEvents:
      return RunEventFeed(o, *feed);
    case feeds::FeedKind::kTable:
      return RunTableFeed(o, *feed);
    case feeds::FeedKind::kSeries:
      return RunSeriesFeed(o, *feed);
  }
  return 1;
}

int RunReplay(const ReplayCliOptions& o) {
  if (feeds::IsFeedFile(o.pipeline)) return RunFeed(o);
  if (std::filesystem::is_directory(o.input)) {
    return Fail("replay", Status::InvalidArgument(o.input + " is a folder; only a series feed "
                                                            "pipeline reads folders"));
  }
  auto spec = pipeline::LoadPipelineSpec(o.pipeline);
  if (!spec.ok()) return Fail("replay", spec.status());
  const pipeline::ProcessorOptions& options = spec->processor;

  ReplaySinks sinks;
  if (Status st = sinks.Open(o); !st.ok()) return Fail("replay", st);
  auto created = pipeline::EventProcessor::Create(options, sinks.sink);
  if (!created.ok()) return Fail("replay", created.status().WithContext(o.pipeline));
  pipeline::EventProcessor& processor = **created;
  pipeline::ReplayOptions ro;
  ro.input = o.input;
  ro.format = o.format == "csv"    ? pipeline::InputFormat::kCsv
              : o.format == "json" ? pipeline::InputFormat::kJsonLines
                                   : pipeline::InputFormat::kAuto;
  if (!o.quiet && isatty(STDERR_FILENO)) ro.progress = DrawProgress;
  auto stats = pipeline::Replay(ro, &processor);
  if (ro.progress) std::fputc('\n', stderr);
  if (!stats.ok()) return Fail("replay", stats.status());
  if (sinks.files) {
    if (Status st = sinks.files->Close(); !st.ok()) return Fail("replay", st);
  }
  PrintStats(stats->records, stats->seconds, stats->accepted, stats->duplicates, stats->rejected,
             processor.feature_store().size(), o, sinks.files != nullptr);
  return 0;
}

}  // namespace

void AddReplayCommand(CLI::App* app, int* exit_code) {
  auto* cmd = app->add_subcommand(
      "replay", "Run a JSON-lines or CSV file through the pipeline without Kafka");
  auto o = std::make_shared<ReplayCliOptions>();
  cmd->add_option("input", o->input,
                  "JSON-lines or CSV file (a series feed also reads a NAB-layout folder)")
      ->required()
      ->check(CLI::ExistingPath);
  cmd->add_option("-p,--pipeline", o->pipeline,
                  "Pipeline definition, or a data-set feed (pipelines/online-retail.yaml, "
                  "telco-churn.yaml, nab.yaml)")
      ->capture_default_str();
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
