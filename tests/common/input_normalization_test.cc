#include "common/input_normalization.h"

#include <limits>
#include <string>

#include <gtest/gtest.h>

namespace qnet {
namespace {

TEST(InputNormalizationTest, AcceptsUnsetAndOneValuePairPerChannel) {
  EXPECT_TRUE(CheckInputNormalization({}, {}).ok());
  EXPECT_TRUE(CheckInputNormalization({0.5}, {0.5}).ok());
  EXPECT_TRUE(CheckInputNormalization({0.49, 0.48, -0.45}, {0.25, 0.24, 0.26}).ok());
  EXPECT_TRUE(CheckInputNormalization(std::vector<double>(kMaxInputChannels, 0),
                                      std::vector<double>(kMaxInputChannels, 1))
                  .ok());
}

TEST(InputNormalizationTest, RefusesMalformedValuesNamingTheProblem) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  struct Case {
    std::vector<double> mean, std;
    std::string says;
  };
  for (const Case& c : std::vector<Case>{
           {{0.5}, {}, "1 mean(s) and 0 std(s)"},
           {{}, {0.5, 0.5}, "0 mean(s) and 2 std(s)"},
           {{0.1, 0.2}, {0.3}, "2 mean(s) and 1 std(s)"},
           {std::vector<double>(kMaxInputChannels + 1, 0),
            std::vector<double>(kMaxInputChannels + 1, 1), "at most 16"},
           {{nan}, {1}, "mean of channel 0 must be finite"},
           {{0, inf}, {1, 1}, "mean of channel 1 must be finite"},
           {{0.5}, {0}, "std of channel 0 must be finite and > 0, got 0"},
           {{0.5, 0.5}, {1, -0.2}, "std of channel 1 must be finite and > 0, got -0.2"},
           {{0.5}, {nan}, "std of channel 0"},
           {{0.5}, {inf}, "std of channel 0"},
       }) {
    const absl::Status s = CheckInputNormalization(c.mean, c.std);
    EXPECT_TRUE(absl::IsInvalidArgument(s)) << c.says << ": " << s;
    EXPECT_NE(s.message().find(c.says), std::string::npos) << s.message();
  }
}

TEST(InputNormalizationTest, FormatsOneLinePerJob) {
  EXPECT_EQ(FormatInputNormalization({0.28604}, {0.35302}),
            "inputs: (pixel/255 - mean) / std, mean 0.286 std 0.353");
  EXPECT_EQ(FormatInputNormalization({0.5, 0.25, 0}, {1, 2, 3}),
            "inputs: (pixel/255 - mean) / std, mean 0.5,0.25,0 std 1,2,3");
  EXPECT_EQ(FormatInputNormalization({}, {}), "");
}

}  // namespace
}  // namespace qnet
