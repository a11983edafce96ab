// The report page's content from metrics lines (the browser checks are in tests/cli/report_cli_test.cpp).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <regex>

#include "recmod/common/errors.h"
#include "recmod/train/report.h"

namespace recmod::train {
namespace report_test {

using ::testing::HasSubstr;
using ::testing::Not;

/// The `d` of the first `<path class="CLASS"` after `after` in `html`.
std::string path_data(const std::string& html, const std::string& after, const std::string& cls) {
  const auto from = html.find(after);
  const auto at = html.find("<path class=\"" + cls + "\"", from);
  const auto d = html.find(" d=\"", at) + 4;
  return html.substr(d, html.find('"', d) - d);
}

TEST(Report, AStepLoggedAgainAfterResumeKeepsTheLaterValue) {
  RunMetrics run;
  run.name = "runs/a";
  run.train = {{{"step", 10}, {"split", "train"}, {"loss", 0.9}},
               {{"step", 20}, {"split", "train"}, {"loss", 0.1}},  // logged, then killed before the checkpoint
               {{"step", 20}, {"split", "train"}, {"loss", 0.7}},  // the resumed run's line
               {{"step", 30}, {"split", "train"}, {"loss", 0.5}}};
  const std::string html = report_html({run});
  const std::string d = path_data(html, "id=\"chart-loss\"", "train");
  EXPECT_EQ(std::count(d.begin(), d.end(), 'L'), 2) << d;  // 3 points
  // y of 0.7 is above (smaller than) y of 0.5: the later value won; 0.1 would be lowest on the page.
  std::regex point(R"([ML]([0-9.]+) ([0-9.]+))");
  std::vector<double> ys;
  for (auto it = std::sregex_iterator(d.begin(), d.end(), point); it != std::sregex_iterator(); ++it)
    ys.push_back(std::stod((*it)[2]));
  ASSERT_EQ(ys.size(), 3u);
  EXPECT_LT(ys[0], ys[1]);  // 0.9 above 0.7
  EXPECT_LT(ys[1], ys[2]);  // 0.7 above 0.5
}

TEST(Report, NamesAreEscapedAndNonFiniteValuesLeftOut) {
  RunMetrics run;
  run.name = "runs/<a&b>";
  run.train = {{{"step", 10}, {"split", "train"}, {"loss", 0.9}, {"auc", nullptr}},  // NaN is written as null
               {{"step", 20}, {"split", "train"}, {"loss", 0.8}, {"auc", 0.6}}};
  const std::string html = report_html({run});
  EXPECT_THAT(html, HasSubstr("data-run=\"runs/&lt;a&amp;b&gt;\""));
  EXPECT_THAT(html, Not(HasSubstr("<a&b>")));
  const std::string d = path_data(html, "id=\"chart-auc\"", "train");
  EXPECT_EQ(std::count(d.begin(), d.end(), 'L'), 0) << d;  // one point
  EXPECT_THAT(d, HasSubstr("h0.1"));                       // drawn as a dot
  EXPECT_THAT(html, HasSubstr("<circle class=\"train-point\""));
}

TEST(Report, NoRunsIsAUsageError) { EXPECT_THROW(report_html({}), UsageError); }

}  // namespace report_test
}  // namespace recmod::train
