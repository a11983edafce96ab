#include "recmod/train/report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <map>
#include <set>
#include <sstream>

#include "recmod/common/errors.h"
#include "recmod/io/atomic_file.h"

namespace recmod::train {

namespace {

// Tableau's ten colours: distinct, and readable on white.
const char* const kColours[] = {"#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
                                "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"};
const char* colour_of(size_t run) { return kColours[run % (sizeof kColours / sizeof kColours[0])]; }

std::string escape(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

/// A coordinate, to a tenth of a pixel.
std::string px(double v) {
  char text[32];
  std::snprintf(text, sizeof text, "%.1f", v);
  return text;
}

/// A value for people: 4 significant digits, k / M for large ones.
std::string number(double v) {
  char text[32];
  const double a = std::fabs(v);
  if (a >= 1e6) {
    std::snprintf(text, sizeof text, "%.4gM", v / 1e6);
  } else if (a >= 1e4) {
    std::snprintf(text, sizeof text, "%.4gk", v / 1e3);
  } else {
    std::snprintf(text, sizeof text, "%.4g", v);
  }
  return text;
}

/// About `target` round tick values (1, 2 or 5 times a power of ten) covering [lo, hi].
std::vector<double> ticks(double lo, double hi, int target) {
  const double raw = (hi - lo) / target;
  const double magnitude = std::pow(10.0, std::floor(std::log10(raw)));
  const double norm = raw / magnitude;
  const double step = (norm < 1.5 ? 1 : norm < 3 ? 2 : norm < 7 ? 5 : 10) * magnitude;
  std::vector<double> out;
  for (double v = std::ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push_back(std::fabs(v) < step * 1e-9 ? 0.0 : v);
  return out;
}

using Points = std::map<int64_t, double>;  // step -> value; a step logged again (after --resume) keeps the later value

/// `key`'s finite numeric values over `lines`, by step.
Points points_of(const std::vector<nlohmann::json>& lines, const std::string& key) {
  Points out;
  for (const auto& line : lines) {
    const auto step = line.find("step");
    const auto value = line.find(key);
    if (step == line.end() || !step->is_number() || value == line.end() || !value->is_number()) continue;
    const double v = value->get<double>();
    if (std::isfinite(v)) out[step->get<int64_t>()] = v;
  }
  return out;
}

struct Series {
  size_t run;
  std::string kind;  // "train", "eval" or "train embedding-lr"
  Points points;
};

struct Chart {
  std::string id, title, y_label, note;
  std::vector<Series> series;
};

void add_series(Chart& chart, size_t run, const std::string& kind, Points points) {
  if (!points.empty()) chart.series.push_back({run, kind, std::move(points)});
}

/// One chart's SVG: axes with round ticks, a grid, one group per run, a legend.
std::string svg_of(const Chart& chart, const std::vector<RunMetrics>& runs) {
  const double width = 720, left = 70, right = 20, top = 14, plot_h = 230;
  const double plot_w = width - left - right, axis_bottom = top + plot_h;
  // The legend's rows under the x axis label: as many runs a row as fit.
  std::vector<std::vector<size_t>> legend_rows(1);
  double row_x = left;
  for (size_t r = 0; r < runs.size(); ++r) {
    const double item = 34 + 7.0 * static_cast<double>(runs[r].name.size());
    if (row_x + item > width - right && !legend_rows.back().empty()) {
      legend_rows.emplace_back();
      row_x = left;
    }
    legend_rows.back().push_back(r);
    row_x += item;
  }
  const double legend_top = axis_bottom + 52;
  const double height = legend_top + 18.0 * static_cast<double>(legend_rows.size()) + 4;

  double x_max = 1, y_lo = INFINITY, y_hi = -INFINITY;
  for (const auto& s : chart.series)
    for (const auto& [step, v] : s.points) {
      x_max = std::max(x_max, static_cast<double>(step));
      y_lo = std::min(y_lo, v);
      y_hi = std::max(y_hi, v);
    }
  if (!(y_lo <= y_hi)) y_lo = 0, y_hi = 1;
  if (y_hi - y_lo < 1e-12 * std::max(1.0, std::fabs(y_hi))) {  // one value: a band around it
    const double pad = std::max(std::fabs(y_hi) * 0.05, 1e-6);
    y_lo -= pad;
    y_hi += pad;
  } else {
    const double pad = (y_hi - y_lo) * 0.05;
    y_lo -= pad;
    y_hi += pad;
  }
  auto sx = [&](double step) { return left + plot_w * step / x_max; };
  auto sy = [&](double v) { return axis_bottom - plot_h * (v - y_lo) / (y_hi - y_lo); };

  std::ostringstream svg;
  svg << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << width << "\" height=\"" << px(height)
      << "\" viewBox=\"0 0 " << width << " " << px(height) << "\" role=\"img\" aria-label=\""
      << escape(chart.title + " over steps") << "\">\n";
  svg << "<g class=\"grid\">";
  for (double v : ticks(y_lo, y_hi, 5))
    svg << "<line x1=\"" << left << "\" x2=\"" << width - right << "\" y1=\"" << px(sy(v)) << "\" y2=\"" << px(sy(v))
        << "\"/><text class=\"tick y\" x=\"" << left - 6 << "\" y=\"" << px(sy(v) + 4) << "\" text-anchor=\"end\">"
        << number(v) << "</text>";
  for (double step : ticks(0, x_max, 6))
    svg << "<line x1=\"" << px(sx(step)) << "\" x2=\"" << px(sx(step)) << "\" y1=\"" << top << "\" y2=\"" << axis_bottom
        << "\"/><text class=\"tick x\" x=\"" << px(sx(step)) << "\" y=\"" << axis_bottom + 16
        << "\" text-anchor=\"middle\">" << number(step) << "</text>";
  svg << "</g>\n<g class=\"axes\"><line x1=\"" << left << "\" x2=\"" << width - right << "\" y1=\"" << axis_bottom
      << "\" y2=\"" << axis_bottom << "\"/><line x1=\"" << left << "\" x2=\"" << left << "\" y1=\"" << top
      << "\" y2=\"" << axis_bottom << "\"/>";
  svg << "<text class=\"axis-label x\" x=\"" << px(left + plot_w / 2) << "\" y=\"" << axis_bottom + 36
      << "\" text-anchor=\"middle\">step</text>";
  svg << "<text class=\"axis-label y\" transform=\"translate(16 " << px(top + plot_h / 2)
      << ") rotate(-90)\" text-anchor=\"middle\">" << escape(chart.y_label) << "</text></g>\n";

  for (size_t r = 0; r < runs.size(); ++r) {
    std::ostringstream group;
    for (const auto& s : chart.series) {
      if (s.run != r) continue;
      const bool eval = s.kind == "eval";
      group << "<path class=\"" << s.kind << "\" fill=\"none\" stroke=\"" << colour_of(r) << "\" stroke-width=\""
            << (eval ? "1.5" : "2") << "\"" << (eval || s.kind != "train" ? " stroke-dasharray=\"5 4\"" : "") << " d=\"";
      char op = 'M';
      for (const auto& [step, v] : s.points) {
        group << op << px(sx(static_cast<double>(step))) << " " << px(sy(v)) << " ";
        op = 'L';
      }
      if (s.points.size() == 1)  // a lone point: a visible dot, not an empty path
        group << "h0.1";
      group << "\" stroke-linecap=\"round\"/>";
      if (s.points.size() == 1 && !eval) {  // and a dot that can be seen
        const auto& [step, v] = *s.points.begin();
        group << "<circle class=\"train-point\" r=\"3\" fill=\"" << colour_of(r) << "\" cx=\""
              << px(sx(static_cast<double>(step))) << "\" cy=\"" << px(sy(v)) << "\"><title>" << escape(runs[r].name)
              << ": step " << step << ": " << escape(chart.y_label) << " " << number(v) << "</title></circle>";
      }
      if (eval)
        for (const auto& [step, v] : s.points)
          group << "<circle class=\"eval-point\" r=\"3.5\" fill=\"" << colour_of(r) << "\" cx=\""
                << px(sx(static_cast<double>(step))) << "\" cy=\"" << px(sy(v)) << "\"><title>"
                << escape(runs[r].name) << ": eval at step " << step << ": " << escape(chart.y_label) << " "
                << number(v) << "</title></circle>";
    }
    if (!group.str().empty())
      svg << "<g class=\"run\" data-run=\"" << escape(runs[r].name) << "\">" << group.str() << "</g>\n";
  }

  svg << "<g class=\"legend\">";
  for (size_t row = 0; row < legend_rows.size(); ++row) {
    double x = left;
    const double y = legend_top + 18.0 * static_cast<double>(row);
    for (size_t r : legend_rows[row]) {
      svg << "<line x1=\"" << px(x) << "\" x2=\"" << px(x + 22) << "\" y1=\"" << px(y - 4) << "\" y2=\"" << px(y - 4)
          << "\" stroke=\"" << colour_of(r) << "\" stroke-width=\"3\"/><text class=\"legend-run\" x=\"" << px(x + 27)
          << "\" y=\"" << px(y) << "\">" << escape(runs[r].name) << "</text>";
      x += 34 + 7.0 * static_cast<double>(runs[r].name.size());
    }
  }
  svg << "</g>\n</svg>\n";
  return svg.str();
}

/// The order metrics are charted in; others follow in name order.
int rank_of(const std::string& metric) {
  static const char* const order[] = {"loss", "auc", "ne", "log_loss", "accuracy", "calibration", "mse", "rmse", "mae"};
  for (size_t i = 0; i < sizeof order / sizeof order[0]; ++i)
    if (metric == order[i]) return static_cast<int>(i);
  return 100;
}

std::string title_of(const std::string& metric) {
  if (metric == "auc") return "AUC";
  if (metric == "ne") return "NE (normalized entropy)";
  if (metric == "log_loss") return "log loss";
  if (metric == "mse" || metric == "rmse" || metric == "mae") {
    std::string upper = metric;
    for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    return upper;
  }
  return metric;
}

std::vector<Chart> charts_of(const std::vector<RunMetrics>& runs) {
  // Every numeric key of the train and eval lines that is a metric.
  static const std::set<std::string> not_metrics = {"step", "epoch", "steps", "count", "split",
                                                    "examples_per_s", "dense_lr", "embedding_lr"};
  std::set<std::string> keys;
  for (const auto& run : runs)
    for (const auto* lines : {&run.train, &run.eval})
      for (const auto& line : *lines)
        for (const auto& item : line.items())
          if (item.value().is_number() && !not_metrics.count(item.key())) keys.insert(item.key());
  // Group: "" for the single-task metrics, else the task's name.
  std::map<std::string, std::vector<std::string>> by_task;
  for (const auto& key : keys) {
    const auto dot = key.find('.');
    by_task[dot == std::string::npos ? "" : key.substr(0, dot)].push_back(key);
  }
  std::vector<Chart> charts;
  for (auto& [task, task_keys] : by_task) {
    auto metric_of = [&](const std::string& key) { return task.empty() ? key : key.substr(task.size() + 1); };
    std::stable_sort(task_keys.begin(), task_keys.end(), [&](const std::string& a, const std::string& b) {
      return rank_of(metric_of(a)) < rank_of(metric_of(b));
    });
    for (const auto& key : task_keys) {
      const std::string metric = metric_of(key);
      Chart chart;
      chart.id = "chart-" + key;
      const std::string name = title_of(metric);
      chart.title = task.empty() ? name : "task " + task + ": " + name;
      chart.y_label = task.empty() ? name : task + "." + name;
      if (key == "loss") {
        // The train lines' loss is the window's mean step loss; the eval lines
        // carry the same quantity as log_loss (single task).
        chart.title = "Loss";
        chart.y_label = "loss";
        chart.note = "train: mean step loss of each logging window; eval: log loss of the evaluation data";
        for (size_t r = 0; r < runs.size(); ++r) {
          add_series(chart, r, "train", points_of(runs[r].train, "loss"));
          add_series(chart, r, "eval", points_of(runs[r].eval, "log_loss"));
        }
      } else if (key == "log_loss" && keys.count("loss")) {
        continue;  // in the loss chart
      } else {
        for (size_t r = 0; r < runs.size(); ++r) {
          add_series(chart, r, "train", points_of(runs[r].train, key));
          add_series(chart, r, "eval", points_of(runs[r].eval, key));
        }
      }
      if (!chart.series.empty()) charts.push_back(std::move(chart));
    }
  }
  Chart speed{"chart-throughput", "Throughput", "examples/s", "training examples per second since the process started", {}};
  Chart lr{"chart-learning-rate", "Learning rate", "learning rate",
           "solid: dense optimizer; dashed: embedding optimizer (each logging window's last step)", {}};
  for (size_t r = 0; r < runs.size(); ++r) {
    add_series(speed, r, "train", points_of(runs[r].train, "examples_per_s"));
    add_series(lr, r, "train", points_of(runs[r].train, "dense_lr"));
    add_series(lr, r, "train embedding-lr", points_of(runs[r].train, "embedding_lr"));
  }
  for (auto* chart : {&speed, &lr})
    if (!chart->series.empty()) charts.push_back(std::move(*chart));
  return charts;
}

/// The headline metric of an evaluation line: auc, else the first task's auc, else none.
std::string headline_of(const std::vector<nlohmann::json>& eval) {
  if (eval.empty()) return "";
  if (eval.back().contains("auc")) return "auc";
  for (const auto& item : eval.back().items())
    if (item.key().size() > 4 && item.key().compare(item.key().size() - 4, 4, ".auc") == 0) return item.key();
  return "";
}

std::string summary_of(const std::vector<RunMetrics>& runs) {
  std::ostringstream out;
  out << "<table class=\"summary\"><thead><tr><th>run</th><th>steps</th><th>epochs</th><th>last train loss</th>"
         "<th>last evaluation</th><th>best evaluation</th><th>examples/s</th><th>bad records skipped</th></tr></thead><tbody>\n";
  for (size_t r = 0; r < runs.size(); ++r) {
    const auto& run = runs[r];
    int64_t steps = 0, epochs = 0;
    for (const auto* lines : {&run.train, &run.eval})
      for (const auto& line : *lines) {
        if (line.contains("step") && line["step"].is_number()) steps = std::max(steps, line["step"].get<int64_t>());
        if (line.contains("epoch") && line["epoch"].is_number())
          epochs = std::max(epochs, line["epoch"].get<int64_t>() + 1);
      }
    auto cell = [](const nlohmann::json* line, const std::string& key) -> std::string {
      if (!line || !line->contains(key) || !(*line)[key].is_number()) return "&ndash;";
      return number((*line)[key].get<double>());
    };
    const nlohmann::json* last_train = run.train.empty() ? nullptr : &run.train.back();
    std::string last_eval = "&ndash;", best_eval = "&ndash;";
    if (!run.eval.empty()) {
      const auto& e = run.eval.back();
      last_eval.clear();
      for (const auto& item : e.items()) {
        if (!item.value().is_number() || item.key() == "step" || item.key() == "count") continue;
        const auto dot = item.key().rfind('.');
        const std::string metric = dot == std::string::npos ? item.key() : item.key().substr(dot + 1);
        if (metric != "auc" && metric != "ne" && metric != "log_loss" && metric != "rmse") continue;
        last_eval += escape(item.key()) + " " + number(item.value().get<double>()) + "<br>";
      }
      last_eval += "at step " + std::to_string(e.value("step", int64_t{0}));
      const std::string headline = headline_of(run.eval);
      if (!headline.empty()) {
        const auto points = points_of(run.eval, headline);
        const auto best = std::max_element(points.begin(), points.end(),
                                           [](const auto& a, const auto& b) { return a.second < b.second; });
        if (best != points.end())
          best_eval = escape(headline) + " " + number(best->second) + " at step " + std::to_string(best->first);
      }
    }
    int64_t skipped = 0;
    for (const auto& line : run.bad_records) skipped += line.value("skipped", int64_t{0});
    out << "<tr data-run=\"" << escape(run.name) << "\"><td><span class=\"swatch\" style=\"background:" << colour_of(r)
        << "\"></span>" << escape(run.name) << "</td><td>" << steps << "</td><td>" << epochs << "</td><td>"
        << cell(last_train, "loss") << "</td><td>" << last_eval << "</td><td>" << best_eval << "</td><td>"
        << cell(last_train, "examples_per_s") << "</td><td>" << skipped << "</td></tr>\n";
  }
  out << "</tbody></table>\n";
  return out.str();
}

}  // namespace

RunMetrics read_run_metrics(const std::string& run_dir) {
  RunMetrics run;
  run.name = run_dir;
  while (run.name.size() > 1 && run.name.back() == '/') run.name.pop_back();
  const std::string path = run.name + "/metrics.jsonl";
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError(str_cat(path, ": cannot read it (is ", run_dir, " a recmod train run directory?)"));
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  size_t start = 0;
  for (int64_t line_no = 1; start < text.size(); ++line_no) {
    const size_t end = text.find('\n', start);
    const bool torn = end == std::string::npos;
    const std::string line = text.substr(start, torn ? std::string::npos : end - start);
    start = torn ? text.size() : end + 1;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!j.is_object()) {
      if (torn) break;  // a run still appending, or killed mid-append
      throw InputError(str_cat(path, ":", line_no, ": expected one JSON object a line, found '",
                               line.substr(0, 60), line.size() > 60 ? "...'" : "'"));
    }
    const std::string split = j.value("split", std::string());
    if (split == "train") {
      run.train.push_back(std::move(j));
    } else if (split == "eval") {
      run.eval.push_back(std::move(j));
    } else if (split == "bad_records") {
      run.bad_records.push_back(std::move(j));
    }
  }
  return run;
}

std::string report_html(const std::vector<RunMetrics>& runs, const std::string& title) {
  if (runs.empty()) throw UsageError("a report needs at least one run");
  std::ostringstream html;
  html << "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>" << escape(title)
       << "</title>\n<style>\n"
          "body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;max-width:780px}\n"
          "h1{font-size:20px}h2{font-size:16px;margin:24px 0 4px}p.note{margin:0 0 4px;color:#666;font-size:12px}\n"
          "table.summary{border-collapse:collapse;font-size:13px}table.summary td,table.summary th{border:1px solid "
          "#ccc;padding:3px 6px;text-align:left;vertical-align:top}\n"
          ".swatch{display:inline-block;width:12px;height:12px;margin-right:6px;vertical-align:middle}\n"
          "svg{display:block;font-size:11px}svg .grid line{stroke:#e4e4e4}svg .axes line{stroke:#444}"
          "svg .tick{fill:#555}svg .axis-label{fill:#222;font-size:12px}svg .legend-run{fill:#222}\n"
          "</style></head><body>\n<h1>"
       << escape(title) << "</h1>\n<p class=\"note\">" << runs.size() << (runs.size() == 1 ? " run" : " runs")
       << "; solid lines: training (each logging window), dashed lines with dots: evaluations.</p>\n";
  html << summary_of(runs);
  const auto charts = charts_of(runs);
  if (charts.empty()) html << "<p class=\"empty\">No metrics logged yet.</p>\n";
  for (const auto& chart : charts) {
    html << "<section class=\"chart\" id=\"" << escape(chart.id) << "\"><h2>" << escape(chart.title) << "</h2>\n";
    if (!chart.note.empty()) html << "<p class=\"note\">" << escape(chart.note) << "</p>\n";
    html << svg_of(chart, runs) << "</section>\n";
  }
  html << "</body></html>\n";
  return html.str();
}

void write_report(const std::vector<std::string>& run_dirs, const std::string& out) {
  std::vector<RunMetrics> runs;
  for (const auto& dir : run_dirs) runs.push_back(read_run_metrics(dir));
  io::write_file_atomically(out, report_html(runs));
}

}  // namespace recmod::train
