#include "rbm/shard.hpp"

#include <algorithm>

#include "rbm/errors.hpp"

namespace rbm {

ShardLayout::ShardLayout(size_t n_rows, int rank_, int size_, size_t block_rows)
    : n(n_rows), block(block_rows), rank(rank_), size(size_) {
  if (size < 1 || rank < 0 || rank >= size) throw Error(fmt("bad rank ", rank, " of ", size));
  if (block < 1) throw Error("shard block must be at least 1 row");
}

size_t ShardLayout::rows_below(size_t g) const {
  g = std::min(g, n);
  const size_t period = static_cast<size_t>(size) * block;
  const size_t full = g / period;  // complete periods: each gives this rank one block
  const size_t rest = g % period;
  const size_t offset = static_cast<size_t>(rank) * block;
  size_t partial = rest > offset ? std::min(rest - offset, block) : 0;
  return full * block + partial;
}

size_t ShardLayout::global_row(size_t l) const {
  const size_t period = static_cast<size_t>(size) * block;
  return (l / block) * period + static_cast<size_t>(rank) * block + l % block;
}

std::pair<size_t, size_t> ShardLayout::local_range(size_t g0, size_t g1) const {
  return {rows_below(g0), rows_below(std::max(g0, g1))};
}

size_t ShardLayout::hs_full_blocks() const { return local_rows() / block; }

size_t ShardLayout::tail_rows() const { return local_rows() % block; }

size_t ShardLayout::tail_start() const {
  return tail_rows() ? global_row(hs_full_blocks() * block) : 0;
}

}  // namespace rbm
