// Registry<T>: lookups by exact name, sorted names, and a second registration of one name stops
// the process at start-up rather than letting either entry win silently.
#include "common/registry.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace qnet {
namespace {

struct Greeter {
  std::string greeting;
};

QNET_REGISTER(Greeter, "hello", Greeter{"hello"});
QNET_REGISTER(Greeter, "bonjour", Greeter{"bonjour"});

TEST(RegistryTest, FindsRegisteredEntriesByExactName) {
  const Registry<Greeter>& r = Registry<Greeter>::Global();
  ASSERT_NE(r.Find("hello"), nullptr);
  EXPECT_EQ(r.Find("hello")->greeting, "hello");
  EXPECT_EQ(r.Find("hell"), nullptr);
  EXPECT_EQ(r.Find("HELLO"), nullptr);
  EXPECT_THAT(r.Names(), ::testing::ElementsAre("bonjour", "hello"));
  EXPECT_EQ(r.NameList(), "bonjour, hello");
}

TEST(RegistryDeathTest, ASecondEntryOfOneNameAborts) {
  EXPECT_DEATH(Registry<Greeter>::Global().Add("hello", Greeter{"again"}),
               "\"hello\" is registered twice");
}

}  // namespace
}  // namespace qnet
