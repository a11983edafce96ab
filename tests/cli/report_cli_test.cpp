// recmod report and the report.html that recmod train writes (issue 14),
// rendered by a real headless browser (Debian's chromium): the page's
// charts are laid out, each run's curves have length and stay inside their
// chart, each evaluation is a dot, the axes and the legend say what they show.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>

#include "cli/run_recmod.h"

namespace recmod::testing {
namespace report_cli_test {

using ::testing::HasSubstr;

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

size_t lines_of_split(const std::string& run, const std::string& split) {
  size_t n = 0;
  std::ifstream in(run + "/metrics.jsonl");
  for (std::string line; std::getline(in, line);)
    if (nlohmann::json::parse(line)["split"] == split) ++n;
  return n;
}

// Run in the browser after the page has been laid out: what each chart shows.
const char* const kProbe = R"(<script>
const out = {charts: []};
for (const section of document.querySelectorAll('section.chart')) {
  const svg = section.querySelector('svg');
  const box = svg.getBoundingClientRect();
  const chart = {id: section.id, title: section.querySelector('h2').textContent, width: box.width, height: box.height,
                 axes: [...svg.querySelectorAll('.axis-label')].map(t => t.textContent),
                 legend: [...svg.querySelectorAll('.legend-run')].map(t => t.textContent), runs: []};
  for (const g of svg.querySelectorAll('g.run')) {
    const run = {name: g.dataset.run, train_lengths: [], eval_points: 0, inside: true, stroke: ''};
    for (const p of g.querySelectorAll('path.train')) {
      run.train_lengths.push(p.getTotalLength());
      run.stroke = getComputedStyle(p).stroke;
    }
    run.eval_points = g.querySelectorAll('circle.eval-point').length;
    for (const e of g.querySelectorAll('path, circle')) {
      const b = e.getBoundingClientRect();
      if (b.left < box.left - 4 || b.right > box.right + 4 || b.top < box.top - 4 || b.bottom > box.bottom + 4) run.inside = false;
    }
    chart.runs.push(run);
  }
  out.charts.push(chart);
}
out.summary_rows = [...document.querySelectorAll('table.summary tbody tr')].map(r => r.dataset.run);
out.scripts = document.querySelectorAll('script').length;
out.external = [...document.querySelectorAll('[src], link[href]')].length;
const pre = document.createElement('pre');
pre.id = 'probe';
pre.textContent = JSON.stringify(out);
document.body.appendChild(pre);
</script>)";

bool have_chromium() { return run_command("command -v chromium >/dev/null 2>&1 && echo yes").output == "yes\n"; }

/// The page as chromium lays it out: the probe's findings, or null with the reason in `why`.
nlohmann::json render(const std::string& page, const std::string& dir, std::string& why) {
  std::string html = read_text(page);
  const auto end = html.rfind("</body>");
  if (end == std::string::npos) {
    why = "no </body> in " + page;
    return nullptr;
  }
  html.insert(end, kProbe);
  const std::string probed = write_file(dir + "/probed.html", html);
  // Bounded: a hung browser fails the test after 60 s instead of stalling the suite.
  const auto r = run_command("timeout 60 chromium --headless --no-sandbox --disable-gpu --disable-dev-shm-usage "
                             "--user-data-dir=" + dir + "/chromium-profile --dump-dom file://" + probed +
                             " 2>/dev/null");
  const auto start = r.output.find("<pre id=\"probe\">");
  if (r.exit_code != 0 || start == std::string::npos) {
    why = "chromium exit " + std::to_string(r.exit_code) + ", output: " + r.output.substr(0, 500);
    return nullptr;
  }
  const auto text_start = start + std::string("<pre id=\"probe\">").size();
  std::string text = r.output.substr(text_start, r.output.find("</pre>", text_start) - text_start);
  for (const auto& [entity, c] : std::vector<std::pair<std::string, std::string>>{{"&lt;", "<"}, {"&gt;", ">"}, {"&amp;", "&"}})
    for (size_t at; (at = text.find(entity)) != std::string::npos;) text.replace(at, entity.size(), c);
  return nlohmann::json::parse(text);
}

const nlohmann::json* chart_of(const nlohmann::json& page, const std::string& id) {
  for (const auto& chart : page["charts"])
    if (chart["id"] == id) return &chart;
  return nullptr;
}

TEST(ReportCli, TrainWritesAPageAndReportComparesRunsInABrowser) {
  const auto dir = fresh_dir("report_cli");
  const std::string train = dir + "/train.rmb", eval = dir + "/eval.rmb";
  write_synthetic(train, "--rows 2000 --dense 2 --sparse 3 --cardinality 50 --seed 5");
  write_synthetic(eval, "--rows 500 --skip 2000 --dense 2 --sparse 3 --cardinality 50 --seed 5");
  // Two runs that differ in their dense learning rate (one with a warmup).
  std::string slow_yaml = tiny_model_yaml("{type: adam, lr: 0.002, schedule: {warmup_steps: 30}}") + "  eval_interval: 20\n";
  const auto fast = write_file(dir + "/fast.yaml", tiny_model_yaml() + "  eval_interval: 20\n");
  const auto slow = write_file(dir + "/slow.yaml", slow_yaml);
  const std::string run_fast = dir + "/fast", run_slow = dir + "/slow";
  for (const auto& [config, run] : {std::pair{fast, run_fast}, std::pair{slow, run_slow}}) {
    auto r = run_recmod("train " + config + " --data " + train + " --eval-data " + eval + " --out " + run + " --threads 1");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_THAT(r.output, HasSubstr("report: " + run + "/report.html"));
    EXPECT_TRUE(std::filesystem::exists(run + "/report.html"));
  }
  auto r = run_recmod("report " + run_fast + " " + run_slow + " --out " + dir + "/both.html");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("report: " + dir + "/both.html (2 runs)"));

  if (!have_chromium()) GTEST_SKIP() << "chromium is not installed (scripts/install-deps --test installs it): the page was "
                                        "written but not rendered";
  std::string why;
  const auto page = render(dir + "/both.html", dir, why);
  ASSERT_FALSE(page.is_null()) << why;
  EXPECT_EQ(page["scripts"], 1) << "the page itself has no script (the one is the test's probe)";
  EXPECT_EQ(page["external"], 0) << "the page loads nothing";
  EXPECT_EQ(page["summary_rows"], nlohmann::json({run_fast, run_slow}));

  const size_t train_lines = lines_of_split(run_fast, "train"), eval_lines = lines_of_split(run_fast, "eval");
  ASSERT_GE(train_lines, 3u);
  ASSERT_GE(eval_lines, 3u);  // every 20 steps of 64 over 2 epochs of 2000, and the end
  for (const auto& [id, y_label] : std::vector<std::pair<std::string, std::string>>{
           {"chart-loss", "loss"}, {"chart-auc", "AUC"}, {"chart-ne", "NE (normalized entropy)"},
           {"chart-throughput", "examples/s"}, {"chart-learning-rate", "learning rate"}}) {
    SCOPED_TRACE(id);
    const auto* chart = chart_of(page, id);
    ASSERT_NE(chart, nullptr);
    EXPECT_GT((*chart)["width"].get<double>(), 600);
    EXPECT_GT((*chart)["height"].get<double>(), 250);
    EXPECT_EQ((*chart)["axes"], nlohmann::json({"step", y_label}));
    EXPECT_EQ((*chart)["legend"], nlohmann::json({run_fast, run_slow}));
    ASSERT_EQ((*chart)["runs"].size(), 2u);
    std::set<std::string> strokes;
    for (const auto& run : (*chart)["runs"]) {
      EXPECT_TRUE(run["inside"].get<bool>()) << run;
      ASSERT_FALSE(run["train_lengths"].empty());
      for (const auto& length : run["train_lengths"]) EXPECT_GT(length.get<double>(), 50) << run;
      // every evaluation is a dot on the metric charts (the loss chart's are the eval log loss)
      const bool has_eval = id == "chart-loss" || id == "chart-auc" || id == "chart-ne";
      EXPECT_EQ(run["eval_points"].get<size_t>(), has_eval ? eval_lines : 0u) << run;
      strokes.insert(run["stroke"].get<std::string>());
    }
    EXPECT_EQ(strokes.size(), 2u) << "one colour per run";
  }
  // the dense and the embedding rate: two curves per run
  EXPECT_EQ((*chart_of(page, "chart-learning-rate"))["runs"][0]["train_lengths"].size(), 2u);

  // The page train wrote for one run renders too, with that run alone.
  const auto single = render(run_slow + "/report.html", dir, why);
  ASSERT_FALSE(single.is_null()) << why;
  EXPECT_EQ((*chart_of(single, "chart-auc"))["legend"], nlohmann::json({run_slow}));
}

TEST(ReportCli, PerTaskCurvesOfAMultiTaskRun) {
  const auto dir = fresh_dir("report_cli_tasks");
  const std::string run = dir + "/run";
  std::filesystem::create_directories(run);
  std::ofstream metrics(run + "/metrics.jsonl");
  for (int step = 10; step <= 40; step += 10) {
    metrics << nlohmann::json{{"step", step}, {"epoch", 0}, {"split", "train"}, {"loss", 1.0 / step},
                              {"like.auc", 0.5 + step / 100.0}, {"like.ne", 1.0 - step / 100.0},
                              {"rating.rmse", 1.0 / step}, {"count", 640}, {"examples_per_s", 1000.0 * step}}
                   .dump()
            << "\n";
    if (step % 20 == 0)
      metrics << nlohmann::json{{"step", step}, {"split", "eval"}, {"like.auc", 0.4 + step / 100.0}, {"rating.rmse", 2.0 / step}}.dump()
              << "\n";
  }
  metrics.close();
  auto r = run_recmod("report " + run);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string html = read_text(run + "/report.html");
  for (const char* id : {"chart-loss", "chart-like.auc", "chart-like.ne", "chart-rating.rmse", "chart-throughput"})
    EXPECT_THAT(html, HasSubstr(std::string("id=\"") + id + "\"")) << id;
  EXPECT_THAT(html, HasSubstr("<h2>task like: AUC</h2>"));
  EXPECT_THAT(html, HasSubstr("<h2>task rating: RMSE</h2>"));

  if (!have_chromium()) GTEST_SKIP() << "chromium is not installed (scripts/install-deps --test installs it)";
  std::string why;
  const auto page = render(run + "/report.html", dir, why);
  ASSERT_FALSE(page.is_null()) << why;
  const auto* auc = chart_of(page, "chart-like.auc");
  ASSERT_NE(auc, nullptr);
  EXPECT_EQ((*auc)["axes"], nlohmann::json({"step", "like.AUC"}));
  EXPECT_EQ((*auc)["runs"][0]["eval_points"], 2);
  EXPECT_GT((*auc)["runs"][0]["train_lengths"][0].get<double>(), 50);
}

TEST(ReportCli, BadRunDirectoriesAreNamed) {
  const auto dir = fresh_dir("report_cli_bad");
  auto r = run_recmod("report " + dir + "/nothing");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.output, HasSubstr(dir + "/nothing/metrics.jsonl: cannot read it"));
  std::filesystem::create_directories(dir + "/run");
  write_file(dir + "/run/metrics.jsonl", "{\"step\": 1, \"split\": \"train\", \"loss\": 0.5}\nnot json\n{\"step\": 2}\n");
  r = run_recmod("report " + dir + "/run");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.output, HasSubstr(dir + "/run/metrics.jsonl:2: expected one JSON object a line, found 'not json'"));
  // A torn last line (a run still writing) is left out.
  write_file(dir + "/run/metrics.jsonl", "{\"step\": 1, \"split\": \"train\", \"loss\": 0.5}\n{\"step\": 2, \"spl");
  r = run_recmod("report " + dir + "/run");
  EXPECT_EQ(r.exit_code, 0) << r.output;
}

}  // namespace report_cli_test
}  // namespace recmod::testing
