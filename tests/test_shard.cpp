// Shard coverage: every row exactly once across ranks, sizes within one block,
// local ranges of any global range exact — checked against a plain enumeration.
#include <gtest/gtest.h>

#include <vector>

#include "rbm/shard.hpp"

using rbm::ShardLayout;

namespace {
// Reference: enumerate block-cyclic ownership row by row.
int owner(size_t g, size_t block, int size) { return static_cast<int>((g / block) % size); }
}  // namespace

class ShardCoverage : public ::testing::TestWithParam<std::tuple<size_t, int, size_t>> {};

TEST_P(ShardCoverage, EveryRowExactlyOnce) {
  auto [n, size, block] = GetParam();
  std::vector<int> seen(n, 0);
  size_t min_rows = n, max_rows = 0;
  for (int r = 0; r < size; ++r) {
    ShardLayout L(n, r, size, block);
    size_t prev = 0;
    for (size_t l = 0; l < L.local_rows(); ++l) {
      size_t g = L.global_row(l);
      ASSERT_LT(g, n);
      ASSERT_EQ(owner(g, block, size), r);
      if (l) {
        ASSERT_GT(g, prev) << "local rows must be in increasing global order";
      }
      prev = g;
      seen[g]++;
    }
    // The HDF5 selection (full blocks + tail) covers exactly local_rows rows.
    EXPECT_EQ(L.hs_full_blocks() * block + L.tail_rows(), L.local_rows());
    min_rows = std::min(min_rows, L.local_rows());
    max_rows = std::max(max_rows, L.local_rows());
  }
  for (size_t g = 0; g < n; ++g) ASSERT_EQ(seen[g], 1) << "row " << g;
  EXPECT_LE(max_rows - min_rows, block);
  size_t blocks = (n + block - 1) / block;
  if (blocks >= static_cast<size_t>(size)) {
    EXPECT_GT(min_rows, 0u);
  }
}

TEST_P(ShardCoverage, LocalRangeMatchesEnumeration) {
  auto [n, size, block] = GetParam();
  const size_t B = 64;  // a global mini-batch
  for (int r = 0; r < size; ++r) {
    ShardLayout L(n, r, size, block);
    for (size_t g0 = 0; g0 < n; g0 += (n > 5000 ? 997 * B : B)) {
      size_t g1 = std::min(n, g0 + B);
      auto [lo, hi] = L.local_range(g0, g1);
      size_t expect = 0;
      for (size_t g = g0; g < g1; ++g) expect += owner(g, block, size) == r;
      ASSERT_EQ(hi - lo, expect);
      for (size_t l = lo; l < hi; ++l) {
        ASSERT_GE(L.global_row(l), g0);
        ASSERT_LT(L.global_row(l), g1);
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Sizes, ShardCoverage,
    ::testing::Combine(::testing::Values<size_t>(1, 7, 60000), ::testing::Values(1, 2, 3, 8),
                       ::testing::Values<size_t>(1, 3, 1024)));
