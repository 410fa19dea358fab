// rbm/node_shared.hpp — one copy of the model per node, and the step's fused
// reduction of the gradient buffer.
//
// defines: rbm::NodeShared
//
// Ranks on the same node (MPI_COMM_TYPE_SHARED) share, through one MPI-3 shared
// memory window: the parameters theta and their momentum (ONE copy per node, read by
// every local rank's GEMMs), one gradient slot per local rank, and the summed buffer.
// A step's reduction of the fused buffer [dW | db | dc | counters] (n floats):
//   1. barrier                               every local rank has written its slot
//   one node (fused):
//   2. local rank l applies the update to segment l of theta and momentum straight
//      from the L slots (their sum, in slot order, is formed block by block in cache
//      and never stored); only the counters are summed into `sum`
//   several nodes:
//   2. local rank l sums segment l of all L slots, in slot order, into `sum`
//   3. node leaders make ONE MPI_Allreduce of the whole `sum` across nodes (then a
//      barrier)
//   4. local rank l applies the update to segment l of theta and momentum from `sum`
//   5. barrier                               everyone sees the new theta and the counters
// Why not a flat MPI_Allreduce and an update on every rank: with L ranks per node
// every rank would hold, reduce and update its own copy of the model — L times the
// memory traffic of one update, plus 2(L-1) ring rounds. Measured on 2 cores with
// 8 ranks (784x500, batch 100): the flat version lost 60-75% of the 2-rank
// throughput; see README "Speed".
// The summation order is fixed (slot 0, 1, ..., L-1; then MPI_Allreduce over the
// nodes), so a run is bitwise reproducible with the same rank layout.
#pragma once

#include <mpi.h>
#include <pthread.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <utility>
#include <vector>

#include "rbm/mpi_env.hpp"

namespace rbm {

/// Liveness of a process without PIDs: the process holds a ROBUST, process-shared
/// mutex in shared memory for its whole life; when it dies the kernel marks the mutex
/// "owner died" and another process's trylock returns EOWNERDEAD. A live process —
/// also a stopped one (SIGSTOP) — keeps it: trylock says EBUSY. Works across PID
/// namespaces (containers that share /dev/shm but not PIDs).
namespace liveness {
void init(pthread_mutex_t* m);  ///< once, by one process, in shared memory
void hold(pthread_mutex_t* m);  ///< by the process whose life it tracks
bool died(pthread_mutex_t* m);  ///< by any other process: true once the holder died
}  // namespace liveness

class NodeShared {
 public:
  static constexpr int kMaxLocalRanks = 1024;

  /// Collective over MPI_COMM_WORLD. n_params parameters, n_extra counters.
  /// group_size 0: all ranks of a host share one copy; N: blocks of N consecutive
  /// ranks of a host do (N = 1 gives every rank its own copy and exercises the
  /// across-nodes MPI_Allreduce on one host).
  /// n_w16: size of an optional shared array of bf16 numbers (the bf16 copy of W,
  /// written by the update; 0 = none).
  NodeShared(size_t n_params, size_t n_extra, int group_size = 0, size_t n_w16 = 0);
  ~NodeShared();
  NodeShared(const NodeShared&) = delete;
  NodeShared& operator=(const NodeShared&) = delete;

  float* theta() const { return theta_; }  ///< [n_params] shared parameters
  float* momentum() const { return momentum_; }  ///< [n_params] shared momentum
  /// [n_params + n_extra] this rank's slot: its gradient [dW | db | dc], then the counters
  float* grad_slot() const { return grad_slot_; }
  /// [n_params + n_extra] after reduce(): the summed counters [n_params, n_params +
  /// n_extra) always; the summed gradient [0, n_params) only when the job spans
  /// several nodes (one node: the update reads the slots directly).
  const float* sum() const { return sum_; }
  /// [n_w16] the node's shared bf16 array (nullptr if n_w16 was 0).
  uint16_t* w16() const { return w16_; }

  /// Steps 1-5 above. `update(a, b, g, ng)` must update theta/momentum[a, b) from the
  /// gradient sum_k g[k][i] (k = 0..ng-1, in this order; g[k] index the whole layout)
  /// and return non-zero if a new value is not finite; reduce() returns the OR over
  /// all ranks of the node.
  using Update = std::function<uint32_t(size_t a, size_t b, const float* const* g, int ng)>;
  uint32_t reduce(const Update& update);
  /// This rank's segment [a, b) of the buffer (parameters and counters).
  size_t segment_begin() const { return seg_a_; }
  size_t segment_end() const { return seg_b_; }
  /// Polling budget of the node barrier before it sleeps (microseconds); 0 = sleep at
  /// once. Default: 30 when the node's ranks do not outnumber its online CPUs, else 0;
  /// RBM_BARRIER_SPIN_US overrides (measurements).
  double spin_us() const { return spin_us_; }

  /// The same reduction with the cross-node part OVERLAPPED with the computation (jobs
  /// on several nodes; on one node it is reduce() after producing every bucket).
  /// Buckets are ranges [a, b) of the buffer, ascending and together [0, n): bucket(j)
  /// returns bucket j's range, produce(j) fills it in this rank's slot (j = 0 is filled
  /// before the call: pass an empty produce for it). For each bucket as soon as it is
  /// produced: node barrier, local rank l sums its part of the bucket over the slots (the
  /// same fixed order as reduce(), so the node's sums are bitwise those of reduce()), node
  /// barrier, and the node leader posts MPI_Iallreduce of the bucket across the nodes and
  /// tests the ones in flight (Open MPI progresses them only inside MPI calls), while the
  /// ranks go on with the next bucket. Then MPI_Waitall, the update and a barrier.
  uint32_t reduce_overlapped(size_t buckets,
                             const std::function<std::pair<size_t, size_t>(size_t j)>& bucket,
                             const std::function<void(size_t j)>& produce,
                             const Update& update);
  /// Seconds this rank (a node leader) has waited for the cross-node reduction since the
  /// last call (MPI_Allreduce in reduce(), MPI_Iallreduce/Testall/Waitall in
  /// reduce_overlapped()): the communication time the computation did not hide. Resets.
  double take_comm_seconds() {
    const double s = comm_seconds_;
    comm_seconds_ = 0;
    return s;
  }

  bool leader() const { return local_rank_ == 0; }  ///< writes shared state at set-up

  /// Thrown (on every rank) when the window does not fit in this node's memory.
  struct OutOfMemory : CollectiveError {
    explicit OutOfMemory(size_t bytes);
    size_t bytes;
  };
  /// MemAvailable, and the free space of /dev/shm that backs the window.
  static size_t available_memory_bytes();
  /// World rank 0's data[0, n) (in its node's shared memory) to every node's shared
  /// copy; then a node barrier. Collective over all ranks.
  void broadcast_from_root(float* data, size_t n) const;
  /// Node barrier in the shared memory: the last rank to arrive wakes the others,
  /// which SLEEP in the kernel (futex) meanwhile instead of polling. Polling waiters
  /// (MPI_Barrier, even with mpi_yield_when_idle) steal time slices from the ranks
  /// still computing whenever ranks outnumber cores; they only poll for a bounded
  /// time first (spin_us) when the node's ranks do not outnumber its CPUs.
  void barrier() const;
  int local_size() const { return local_size_; }
  int nodes() const { return nodes_; }

 private:
  size_t n_params_, n_, bytes_ = 0;
  MPI_Comm node_ = MPI_COMM_NULL, leaders_ = MPI_COMM_NULL;
  MPI_Win win_ = MPI_WIN_NULL;
  int local_rank_ = 0, local_size_ = 1, nodes_ = 1;
  float *theta_ = nullptr, *momentum_ = nullptr, *slots_ = nullptr, *grad_slot_ = nullptr,
        *sum_ = nullptr;
  uint16_t* w16_ = nullptr;
  std::vector<const float*> slot_ptrs_;
  uint32_t* flags_ = nullptr;
  struct SyncWord;              // barrier counter + generation, in the shared window
  SyncWord* sync_ = nullptr;
  double spin_us_ = 0;          // polling budget before sleeping: 0 when oversubscribed
  size_t stride_ = 0;  // floats between slots (n rounded up to 16)
  size_t seg_a_ = 0, seg_b_ = 0;
  double comm_seconds_ = 0;
};

}  // namespace rbm
