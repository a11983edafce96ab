// Issue 18: what yaml-cpp lets through or words misleadingly is refused with
// the position: a quote left open on the last line, binary bytes, nesting
// deeper than any config needs.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

#include "recmod/common/errors.h"
#include "recmod/config/config_node.h"

namespace recmod::config {
namespace config_text_test {

using ::testing::HasSubstr;

std::string config_error(const std::string& text) {
  try {
    ConfigNode::load_string(text, "m.yaml");
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "<no ConfigError>";
}

std::string file_error(const std::string& path) {
  try {
    ConfigNode::load_file(path);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "<no ConfigError>";
}

std::string input(const std::string& name) { return std::string(RECMOD_SOURCE_DIR) + "/tests/reliability/inputs/" + name; }

TEST(ConfigText, UnclosedQuoteOnTheLastLineIsAnError) {
  // yaml-cpp folds `"d\n` at the end of the text into the scalar "d ".
  EXPECT_EQ(file_error(input("unclosed_quote.yaml")),
            input("unclosed_quote.yaml") +
                ":4:9: the string opened with \" here is never closed (expected a closing \" before the end of the file)");
  EXPECT_EQ(config_error("a: 1\nb: 'x\n"),
            "m.yaml:2:4: the string opened with ' here is never closed (expected a closing ' before the end of the file)");
  EXPECT_THAT(config_error("a: 1\n'b\n"), HasSubstr("m.yaml:2:1: the string opened with '"));
  // Closed quotes with escapes, doubled single quotes, quotes inside quotes.
  auto root = ConfigNode::load_string("a: \"x\\\"y\"\nb: 'it''s'\nc: \"'\"\nd: '\"'\n'e': [\"f\", 'g']\n", "m.yaml");
  EXPECT_EQ(root["a"].as_string(), "x\"y");
  EXPECT_EQ(root["b"].as_string(), "it's");
  EXPECT_EQ(root["c"].as_string(), "'");
  EXPECT_EQ(root["d"].as_string(), "\"");
  EXPECT_NO_THROW(ConfigNode::load_string("a: \"x\"", "m.yaml"));  // no newline at the end
}

TEST(ConfigText, NulAndBinaryBytesSayNotATextFile) {
  EXPECT_EQ(file_error(input("nul_bytes.yaml")),
            input("nul_bytes.yaml") + ":4:10: not a text file: byte 109 is 0x00 (a control character; a config is "
                                      "UTF-8 text, with tabs and newlines only)");
  EXPECT_EQ(config_error(std::string("a: 1\n\x7f\x45LF\x02", 9)),
            "m.yaml:2:1: not a text file: byte 5 is 0x7f (a control character; a config is UTF-8 text, with tabs and "
            "newlines only)");
  EXPECT_THAT(config_error(std::string("\xff\xfe" "a\0:\0", 6)), HasSubstr("m.yaml: not a text file this reader takes: it starts with a UTF-16 byte order mark"));
  // Tabs, CR LF and UTF-8 are text.
  EXPECT_NO_THROW(ConfigNode::load_string("a: \"t\\u00e9\t\xc3\xa9\"\r\nb: 2\r\n", "m.yaml"));
}

TEST(ConfigText, DeepNestingSaysHowDeep) {
  const std::string message = ": nesting deeper than 100 levels (lists and maps inside each other); a config needs a few";
  // 1000 levels: yaml-cpp's own guard (it said "bad file").
  EXPECT_THAT(config_error("a: " + std::string(1000, '[') + std::string(1000, ']') + "\n"), HasSubstr(message));
  std::string block;
  for (int i = 0; i < 1000; ++i) block += std::string(i, ' ') + "k:\n";
  EXPECT_THAT(config_error(block), HasSubstr(message));
  // 101 levels: under yaml-cpp's limit, over recmod's.
  EXPECT_EQ(config_error("a: " + std::string(100, '[') + std::string(100, ']') + "\n"), "m.yaml:1:103" + message);
  EXPECT_NO_THROW(ConfigNode::load_string("a: " + std::string(99, '[') + std::string(99, ']') + "\n", "m.yaml"));
}

}  // namespace config_text_test
}  // namespace recmod::config
