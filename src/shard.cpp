#include "rbm/shard.hpp"

#include <algorithm>

#include <cmath>
#include <numeric>

#include "rbm/errors.hpp"
#include "rbm/rng.hpp"

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

// ---------------------------------------------------------------------------
namespace {
using u128 = unsigned __int128;
size_t mul_div(size_t a, size_t b, size_t c) {  // floor(a * b / c) without overflow
  return static_cast<size_t>(static_cast<u128>(a) * b / c);
}
}  // namespace

VirtualShards::VirtualShards(size_t n_rows, size_t shards, int rank, int size)
    : n_(n_rows), s_(std::min(shards, n_rows)), rank_(rank), size_(size) {
  if (n_ < 1 || shards < 1) throw Error("virtual shards need at least one row and one shard");
  if (size_ < 1 || rank_ < 0 || rank_ >= size_) throw Error(fmt("bad rank ", rank_, " of ", size_));
}

size_t VirtualShards::start(size_t k) const { return mul_div(std::min(k, s_), n_, s_); }

size_t VirtualShards::first_shard(int r) const {
  return mul_div(static_cast<size_t>(std::clamp(r, 0, size_)), s_, static_cast<size_t>(size_));
}

int VirtualShards::owner(size_t k) const {
  // the largest r with floor(r S / P) <= k, i.e. r = ceil((k + 1) P / S) - 1
  const u128 num = static_cast<u128>(k + 1) * static_cast<size_t>(size_) + s_ - 1;
  return static_cast<int>(num / s_) - 1;
}

BatchRule::BatchRule(const VirtualShards& vs, uint64_t seed, bool shuffle)
    : vs_(vs), seed_(seed), shuffle_(shuffle) {
  const size_t S = vs_.count();
  // A stride g coprime with S whose ratio g/S has only small continued-fraction partial
  // quotients (the golden ratio's are all 1): then every window of consecutive j*g mod S
  // is spread evenly (a large quotient q would make the points bunch into about q
  // groups). Searched near S (sqrt(5) - 1) / 2; ties go to the nearest.
  auto worst_quotient = [S](size_t g) {
    size_t a = S, b = g, worst = 0;
    while (b) {
      worst = std::max(worst, a / b);
      a %= b;
      std::swap(a, b);
    }
    return worst;
  };
  const double phi = (std::sqrt(5.0) - 1.0) / 2.0;
  const auto g0 = static_cast<long long>(std::llround(static_cast<double>(S) * phi));
  const long long reach = std::min<long long>(static_cast<long long>(S), 20000);
  size_t best = SIZE_MAX;
  g_ = 1;
  for (long long d = 0; d <= reach; ++d)
    for (long long g : {g0 - d, g0 + d})
      if (g >= 1 && g < static_cast<long long>(S) && std::gcd(static_cast<size_t>(g), S) == 1) {
        const size_t w = worst_quotient(static_cast<size_t>(g));
        if (w < best) {
          best = w;
          g_ = static_cast<size_t>(g);
        }
      }
  if (S == 1) g_ = 0;
}

size_t BatchRule::rotation(uint64_t epoch, size_t round) const {
  if (!shuffle_) return 0;
  if (rot_epoch_ == epoch && rot_round_ == round) return rot_;
  const CounterRng rng(seed_);
  auto r = rng.bits(Stream::shuffle, 1, epoch, 0, 0);
  (void)round;
  const uint64_t x = (static_cast<uint64_t>(r[0]) << 32) | r[1];
  rot_epoch_ = epoch;
  rot_round_ = round;
  rot_ = static_cast<size_t>(x % vs_.count());
  return rot_;
}

void BatchRule::owned(uint64_t epoch, size_t p0, size_t p1, std::vector<ShardPos>& out) const {
  const size_t S = vs_.count(), full = vs_.rows() / S * S;
  const size_t a = vs_.first_shard(vs_.rank()), b = vs_.first_shard(vs_.rank() + 1);
  size_t p = p0;
  while (p < p1 && p < full) {  // full rounds: k advances by g per position
    const size_t i = p / S, end = std::min(p1, (i + 1) * S);
    size_t k = at(epoch, p).shard;
    for (; p < end; ++p) {
      if (k >= a && k < b) out.push_back({k, i});
      k += g_;
      if (k >= S) k -= S;
    }
  }
  for (; p < p1; ++p) {  // the last, partial round
    const ShardPos pos = at(epoch, p);
    if (pos.shard >= a && pos.shard < b) out.push_back(pos);
  }
}

ShardPos BatchRule::at(uint64_t epoch, size_t p) const {
  const size_t S = vs_.count(), q = vs_.rows() / S, full = q * S;
  if (p < full) {
    const size_t i = p / S, j = p % S;
    const size_t k = (j + rotation(epoch, i)) % S * g_ % S;  // S <= 2^31: no overflow
    return {k, i};
  }
  if (last_epoch_ != epoch) {  // the last round: only the shards with q + 1 rows
    last_round_.clear();
    const size_t o = rotation(epoch, q);
    for (size_t j = 0; j < S; ++j) {
      const size_t k = (j + o) % S * g_ % S;
      if (vs_.shard_rows(k) > q) last_round_.push_back(k);
    }
    last_epoch_ = epoch;
  }
  return {last_round_.at(p - full), q};
}

void BatchRule::shard_order(uint64_t epoch, size_t k, uint32_t* out) const {
  const size_t n = vs_.shard_rows(k);
  std::iota(out, out + n, 0u);
  if (!shuffle_) return;
  // Fisher-Yates with Philox draws indexed by (epoch, shard, position).
  const CounterRng rng(seed_);
  for (size_t i = n; i > 1; --i) {
    auto r = rng.bits(Stream::shuffle, 0, epoch, k, static_cast<uint32_t>(i));
    const uint64_t x = (static_cast<uint64_t>(r[0]) << 32) | r[1];
    std::swap(out[i - 1], out[x % i]);
  }
}

}  // namespace rbm
