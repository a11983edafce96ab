#pragma once
// recmod report: training runs as one self-contained HTML page. Each run's
// metrics.jsonl (docs/cli.md) becomes curves over steps in inline SVG
// charts: the loss, AUC, NE and every other metric the file holds (per task
// with `tasks:`), the evaluation points, throughput and learning rates, one
// colour per run so that several runs compare on the same axes. The page
// loads nothing (no network, no script) and opens in any browser.
#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace recmod::train {

/// One run's metrics.jsonl, split by its lines' `split`, in file order.
struct RunMetrics {
  std::string name;  // the run directory as given
  std::vector<nlohmann::json> train, eval, bad_records;
};

/// Reads `run_dir`/metrics.jsonl. A line that is not a JSON object is an
/// InputError naming `file:line`, except a torn last line (no newline: a run
/// still writing, or killed mid-append), which is left out.
RunMetrics read_run_metrics(const std::string& run_dir);

/// The page for `runs` (at least one): a summary table (steps, last train
/// loss, the last and best evaluation, throughput) and one chart per metric.
/// In each chart's SVG a run is a `<g class="run" data-run=NAME>` holding a
/// `path.train` (the train lines' values) and, where the run evaluated, a
/// dashed `path.eval` with one `circle.eval-point` per evaluation; the
/// learning-rate chart draws `path.train.embedding-lr` dashed beside the
/// dense rate. Steps that a resumed run logged again keep the later value.
std::string report_html(const std::vector<RunMetrics>& runs, const std::string& title = "recmod training report");

/// Reads each run directory and writes their page to `out` atomically.
void write_report(const std::vector<std::string>& run_dirs, const std::string& out);

}  // namespace recmod::train
