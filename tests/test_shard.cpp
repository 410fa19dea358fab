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

// ---------------------------------------------------------------------------
// Virtual shards and the batch rule (the trainer's data path), against enumeration.
// ---------------------------------------------------------------------------
#include <map>
#include <numeric>

using rbm::BatchRule;
using rbm::ShardPos;
using rbm::VirtualShards;

class VirtualShardCase
    : public ::testing::TestWithParam<std::tuple<size_t, size_t, size_t, bool>> {};

// Every row of the file once per epoch; each rank's rows one contiguous block of
// floor/ceil(S/P) shards; the batches (as sets of file rows) the same for every P;
// each rank's part of a batch within 3 + 10% of B/P when P divides S (a window of a
// Kronecker sequence with small partial quotients).
TEST_P(VirtualShardCase, EpochCoversEveryRowOnceAndBatchesIgnoreTheRankCount) {
  auto [n, S, B, shuffle] = GetParam();
  const size_t Se = std::min(S, n);
  std::map<int, std::vector<std::vector<size_t>>> batches_by_p;  // P -> batch -> sorted rows
  for (int P : {1, 2, 3, 4, 8, 16}) {
    if (static_cast<size_t>(P) > Se) continue;
    std::vector<std::vector<size_t>> batches((n + B - 1) / B);
    size_t next_row = 0, max_block = 0;
    for (int r = 0; r < P; ++r) {
      VirtualShards vs(n, S, r, P);
      ASSERT_EQ(vs.count(), Se);
      ASSERT_EQ(vs.row_begin(), next_row) << "blocks must tile the file in rank order";
      next_row = vs.row_end();
      max_block = std::max(max_block, vs.row_end() - vs.row_begin());
      const size_t owned = vs.first_shard(r + 1) - vs.first_shard(r);
      EXPECT_GE(owned, Se / P);
      EXPECT_LE(owned, (Se + P - 1) / P);
      for (size_t k = vs.first_shard(r); k < vs.first_shard(r + 1); ++k) ASSERT_EQ(vs.owner(k), r);
      BatchRule rule(vs, 42, shuffle);
      for (uint64_t epoch : {0ull, 3ull}) {
        std::vector<int> seen(n, 0);
        for (size_t s = 0; s * B < n; ++s) {
          std::vector<ShardPos> pos;
          rule.owned(epoch, s * B, std::min(n, (s + 1) * B), pos);
          const double share = static_cast<double>(std::min(n, (s + 1) * B) - s * B) / P;
          if (Se % P == 0 && n % Se == 0) {  // equal shards, equal owners: balanced batches
            EXPECT_LE(std::abs(static_cast<double>(pos.size()) - share), 3.0 + 0.1 * share)
                << "n " << n << " S " << S << " P " << P << " batch " << s;
          }
          for (const ShardPos& p : pos) {
            ASSERT_TRUE(vs.owns(p.shard));
            std::vector<uint32_t> order(vs.shard_rows(p.shard));
            rule.shard_order(epoch, p.shard, order.data());
            ASSERT_LT(p.index, order.size());
            const size_t row = vs.start(p.shard) + order[p.index];
            seen[row]++;
            if (epoch == 3) batches[s].push_back(row);
          }
        }
        for (size_t g = vs.row_begin(); g < vs.row_end(); ++g)
          ASSERT_EQ(seen[g], 1) << "row " << g << " rank " << r << " epoch " << epoch;
      }
    }
    EXPECT_EQ(next_row, n);
    // Reading only one's share: at most ceil(S/P) shards of at most ceil(N/S) rows.
    EXPECT_LE(max_block, (Se + P - 1) / P * ((n + Se - 1) / Se));
    for (auto& b : batches) std::sort(b.begin(), b.end());
    batches_by_p[P] = batches;
  }
  for (const auto& [P, batches] : batches_by_p)
    EXPECT_EQ(batches, batches_by_p[1]) << P << " ranks: other batches than 1 rank";
}

INSTANTIATE_TEST_SUITE_P(
    Sizes, VirtualShardCase,
    ::testing::Values(std::tuple<size_t, size_t, size_t, bool>{1001, 720, 96, true},
                      std::tuple<size_t, size_t, size_t, bool>{7200, 720, 100, true},
                      std::tuple<size_t, size_t, size_t, bool>{7200, 720, 1000, false},
                      std::tuple<size_t, size_t, size_t, bool>{487, 720, 48, true},
                      std::tuple<size_t, size_t, size_t, bool>{60000, 720, 100, true},
                      std::tuple<size_t, size_t, size_t, bool>{100, 10, 7, true},
                      std::tuple<size_t, size_t, size_t, bool>{5, 720, 2, false}));

TEST(BatchRule, ShuffleChangesTheOrderEveryEpochAndNoneKeepsIt) {
  VirtualShards vs(7200, 720, 0, 1);
  auto first_batch = [&](bool shuffle, uint64_t epoch) {
    BatchRule rule(vs, 1, shuffle);
    std::vector<ShardPos> pos;
    rule.owned(epoch, 0, 100, pos);
    std::vector<size_t> rows;
    for (const ShardPos& p : pos) {
      std::vector<uint32_t> order(vs.shard_rows(p.shard));
      rule.shard_order(epoch, p.shard, order.data());
      rows.push_back(vs.start(p.shard) + order[p.index]);
    }
    return rows;
  };
  EXPECT_NE(first_batch(true, 0), first_batch(true, 1));
  EXPECT_EQ(first_batch(false, 0), first_batch(false, 1));
  // --shuffle none: row 0 of the shards in the golden-ratio order, file order inside.
  BatchRule none(vs, 1, false);
  EXPECT_EQ(std::gcd(none.stride(), size_t{720}), 1u);
  size_t a = 720, b = none.stride(), worst = 0;  // continued fraction of g / S
  while (b) {
    worst = std::max(worst, a / b);
    a %= b;
    std::swap(a, b);
  }
  EXPECT_LE(worst, 3u) << "stride " << none.stride() << ": windows would bunch";
  EXPECT_EQ(first_batch(false, 0)[1], 10 * none.stride());
}
