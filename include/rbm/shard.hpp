// rbm/shard.hpp — which rows of an [N, D] dataset each MPI rank owns.
//
// defines: rbm::ShardLayout (block-cyclic: rbm_eval, rbm_bench, PCD chains),
//          rbm::VirtualShards and rbm::BatchRule (the trainer's data: each rank reads one
//          contiguous block; global batches are the same for every rank count)
//
// Scheme: BLOCK-CYCLIC over rows. Rows are cut into blocks of `block` rows;
// block j belongs to rank j mod P. In HDF5 terms rank r selects the hyperslab
//   start = r*block, stride = P*block, count = #blocks, block = block
// (the last block of the file may be short; it is OR-ed into the same selection).
//
// (The trainer no longer uses this for its data: with block = 1 every rank's selection
// touched every HDF5 chunk, so each of P ranks read and inflated the whole file. See
// VirtualShards below. What follows is why block-cyclic suits the other users.)
// Why block-cyclic:
//  * Every rank's local rows are in increasing global order, so ANY contiguous
//    global range of rows [g0, g1) is a contiguous range of local rows on every
//    rank (local_range). The trainer defines global mini-batch s as rows
//    [s*B, (s+1)*B): with shuffling off, the global batches — and so the
//    gradients — are the same whatever the number of ranks.
//  * With block = 1 each rank holds floor or ceil of B/P rows of every batch, so
//    the ranks' work per step differs by at most one sample (no straggler).
//    The price: every rank touches every HDF5 chunk once at start-up (about 0.1 s
//    of decompression for 60,000 MNIST images), which we accept.
//  * Shard sizes differ by at most one block. A rank is empty only when the
//    dataset has fewer blocks than there are ranks.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>
#include <utility>

namespace rbm {

struct ShardLayout {
  size_t n = 0;      ///< global rows N
  size_t block = 1;  ///< rows per block
  int rank = 0;      ///< this rank r
  int size = 1;      ///< number of ranks P

  ShardLayout(size_t n_rows, int rank_, int size_, size_t block_rows = 1);

  /// Number of global rows g' < g owned by this rank.
  size_t rows_below(size_t g) const;
  /// Rows held by this rank.
  size_t local_rows() const { return rows_below(n); }
  /// Global index of local row l.
  size_t global_row(size_t l) const;
  /// Local rows [lo, hi) that hold exactly this rank's rows of global [g0, g1).
  std::pair<size_t, size_t> local_range(size_t g0, size_t g1) const;

  // The HDF5 hyperslab of the full blocks (start, stride, count, block) and the
  // short tail block (tail_start, tail_rows; tail_rows == 0 when there is none).
  size_t hs_start() const { return static_cast<size_t>(rank) * block; }
  size_t hs_stride() const { return static_cast<size_t>(size) * block; }
  size_t hs_full_blocks() const;
  size_t tail_start() const;
  size_t tail_rows() const;
};

// ---------------------------------------------------------------------------
// The trainer's data: S virtual shards, P ranks, one contiguous block per rank.
//
// The N rows of the file are cut into S_eff = min(S, N) VIRTUAL SHARDS of consecutive
// rows: shard k is rows [floor(k N / S_eff), floor((k+1) N / S_eff)), so their sizes
// differ by at most one row. Rank r of P owns the consecutive shards
// [floor(r S_eff / P), floor((r+1) S_eff / P)) — so it reads ONE contiguous block of
// about N/P rows (one HDF5 hyperslab; at most two chunks shared with its neighbours) —
// and every rank owns floor or ceil of S_eff / P shards (exactly S/P when P divides S).
//
// Which rows make global batch s (BatchRule): an epoch is a sequence of N positions in
// ROUNDS; round i visits every shard that has more than i rows once, and takes the
// shard's i-th row in its order for this epoch (a Philox permutation keyed by seed,
// epoch and shard with --shuffle epoch; file order with --shuffle none). Within a round
// the shards are visited in the order k = ((j + o) * g) mod S_eff for j = 0, 1, ...,
// where g is coprime with S_eff and g / S_eff has only small continued-fraction partial
// quotients (like the golden ratio; searched near S_eff (sqrt(5) - 1) / 2), and o is a
// random rotation per epoch (0 with --shuffle none).
// The visiting order has period S_eff, so ANY window of consecutive positions — a batch,
// also across rounds — is a window of one Kronecker sequence j*g/S mod 1, spread almost
// evenly over the shards: each rank's part of every batch is close to B/P. Global batch s is positions
// [s B, min(N, (s+1) B)); with --drop-last on the trainer makes only the floor(N/B) full
// batches, leaving the epoch's last N mod B positions out. Nothing here depends on P: the
// batches — and so the model, up to the order of floating-point sums — are the same for
// any number of ranks.
// ---------------------------------------------------------------------------
class VirtualShards {
 public:
  VirtualShards() = default;
  /// n_rows >= 1, shards >= 1 (S, capped at N), 0 <= rank < size.
  VirtualShards(size_t n_rows, size_t shards, int rank, int size);

  size_t rows() const { return n_; }       ///< N
  size_t count() const { return s_; }      ///< S_eff = min(S, N)
  int rank() const { return rank_; }
  int ranks() const { return size_; }
  /// First file row of shard k (k = S_eff gives N).
  size_t start(size_t k) const;
  size_t shard_rows(size_t k) const { return start(k + 1) - start(k); }
  /// Shards owned by rank r: [first_shard(r), first_shard(r + 1)).
  size_t first_shard(int r) const;
  int owner(size_t k) const;
  /// This rank's rows: the contiguous file rows [row_begin(), row_end()).
  size_t row_begin() const { return start(first_shard(rank_)); }
  size_t row_end() const { return start(first_shard(rank_ + 1)); }
  bool owns(size_t k) const { return k >= first_shard(rank_) && k < first_shard(rank_ + 1); }

 private:
  size_t n_ = 0, s_ = 1;
  int rank_ = 0, size_ = 1;
};

/// Position p of an epoch's sequence: the i-th row (in the shard's order for the epoch)
/// of shard k.
struct ShardPos {
  size_t shard = 0;
  size_t index = 0;
};

class BatchRule {
 public:
  BatchRule() = default;
  /// shuffle = false: no rotation (and the caller uses file order within the shards).
  BatchRule(const VirtualShards& vs, uint64_t seed, bool shuffle);
  /// The stride g of the visiting order (coprime with S_eff, small partial quotients).
  size_t stride() const { return g_; }
  /// Where position p in [0, N) of `epoch` takes its row from.
  ShardPos at(uint64_t epoch, size_t p) const;
  /// Appends (in position order) the positions p in [p0, p1) of `epoch` whose shard this
  /// rank owns: its part of a global batch. O(p1 - p0) cheap steps.
  void owned(uint64_t epoch, size_t p0, size_t p1, std::vector<ShardPos>& out) const;
  /// Shard k's order of its n_k rows in `epoch` (identity without shuffle): out[i] is the
  /// row (relative to start(k)) at index i.
  void shard_order(uint64_t epoch, size_t k, uint32_t* out) const;

 private:
  size_t rotation(uint64_t epoch, size_t round) const;
  VirtualShards vs_;
  uint64_t seed_ = 0;
  bool shuffle_ = false;
  size_t g_ = 1;
  // The last, partial round (N mod S_eff > 0) visits only the larger shards; their
  // order is recomputed per epoch (cached for the last epoch asked).
  mutable uint64_t last_epoch_ = UINT64_MAX;
  mutable uint64_t rot_epoch_ = UINT64_MAX;  // cached rotation of (rot_epoch_, rot_round_)
  mutable size_t rot_round_ = 0, rot_ = 0;
  mutable std::vector<size_t> last_round_;
};

}  // namespace rbm
