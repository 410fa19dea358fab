#include "rbm/node_shared.hpp"

#include <linux/futex.h>
#include <pthread.h>
#include <sys/statvfs.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <climits>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <vector>
#include <immintrin.h>

#include "rbm/errors.hpp"
#include "rbm/prof.hpp"

namespace rbm {

namespace {
size_t round16(size_t n) { return (n + 15) / 16 * 16; }  // 64-byte multiples

// Process-shared futex calls (no FUTEX_PRIVATE_FLAG: the word is in shared memory).
void futex_wait(std::atomic<uint32_t>* word, uint32_t expected, const timespec* timeout) {
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAIT, expected, timeout, nullptr, 0);
}
void futex_wake_all(std::atomic<uint32_t>* word) {
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAKE, INT_MAX, nullptr, nullptr, 0);
}
}  // namespace

// Liveness without PIDs (containers may share /dev/shm but not a PID namespace):
// every local rank holds its own ROBUST process-shared mutex for its whole life. When
// a process dies, the kernel marks the mutexes it held as "owner died", so a waiter's
// trylock returns EOWNERDEAD; a live rank's returns EBUSY — also while it is stopped
// (SIGSTOP), which must not end the job. (A heartbeat word could not tell a stopped
// rank from a dead one.)
namespace liveness {
void init(pthread_mutex_t* m) {
  pthread_mutexattr_t attr;
  pthread_mutexattr_init(&attr);
  pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
  pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
  pthread_mutex_init(m, &attr);
  pthread_mutexattr_destroy(&attr);
}
void hold(pthread_mutex_t* m) { pthread_mutex_lock(m); }
bool died(pthread_mutex_t* m) { return pthread_mutex_trylock(m) == EOWNERDEAD; }
}  // namespace liveness

struct NodeShared::SyncWord {
  alignas(64) std::atomic<uint32_t> arrived;
  alignas(64) std::atomic<uint32_t> generation;
  alignas(64) pthread_mutex_t alive[kMaxLocalRanks];
};
static_assert(std::atomic<uint32_t>::is_always_lock_free, "futex barrier needs lock-free atomics");

NodeShared::NodeShared(size_t n_params, size_t n_extra, int group_size, size_t n_w16)
    : n_params_(n_params), n_(n_params + n_extra) {
  int world_rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
  MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, world_rank, MPI_INFO_NULL, &node_);
  if (group_size > 0) {  // blocks of group_size consecutive ranks of this host
    int host_rank = 0;
    MPI_Comm_rank(node_, &host_rank);
    MPI_Comm group;
    MPI_Comm_split(node_, host_rank / group_size, world_rank, &group);
    MPI_Comm_free(&node_);
    node_ = group;
  }
  MPI_Comm_rank(node_, &local_rank_);
  MPI_Comm_size(node_, &local_size_);
  MPI_Comm_split(MPI_COMM_WORLD, local_rank_ == 0 ? 0 : MPI_UNDEFINED, world_rank, &leaders_);
  if (leaders_ != MPI_COMM_NULL) MPI_Comm_size(leaders_, &nodes_);
  MPI_Bcast(&nodes_, 1, MPI_INT, 0, node_);

  // Layout (floats): theta | momentum | sum | L slots | bf16 array | L flags | barrier
  // word, each block 64-byte aligned.
  stride_ = round16(n_);
  const size_t np = round16(n_params_);
  const size_t nw16 = round16((n_w16 + 1) / 2);  // floats holding n_w16 bf16 numbers
  const size_t nflags = round16(static_cast<size_t>(local_size_));
  // The window's base is only 8-byte aligned: 16 spare floats let the barrier word
  // start on a 64-byte boundary.
  const size_t total = 2 * np + stride_ + static_cast<size_t>(local_size_) * stride_ + nw16 +
                       nflags + (sizeof(SyncWord) + 63) / sizeof(float) + 16;
  bytes_ = total * sizeof(float);
  // Enough memory on this node? (The kernel would hand out the window lazily and kill
  // the job at first touch instead of failing the allocation.) Every rank agrees.
  int fits = local_rank_ != 0 || bytes_ <= available_memory_bytes() ? 1 : 0;
  MPI_Allreduce(MPI_IN_PLACE, &fits, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  if (!fits) throw OutOfMemory(bytes_);
  float* base = nullptr;
  MPI_Aint bytes = local_rank_ == 0 ? static_cast<MPI_Aint>(bytes_) : 0;
  MPI_Comm_set_errhandler(node_, MPI_ERRORS_RETURN);
  int ok = MPI_Win_allocate_shared(bytes, sizeof(float), MPI_INFO_NULL, node_, &base, &win_) ==
           MPI_SUCCESS;
  MPI_Allreduce(MPI_IN_PLACE, &ok, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  if (!ok) throw OutOfMemory(bytes_);
  // MPI_Win_allocate_shared only promises 8-byte alignment (Open MPI 4.1 gives base
  // addresses like ...08): the spare floats above let the layout start at the first
  // 64-byte boundary, so SyncWord's alignas(64) words (and the 64-byte blocks) hold.
  constexpr size_t kAlign = 64;
  MPI_Aint size = 0;
  int disp = 0;
  MPI_Win_shared_query(win_, 0, &size, &disp, &base);
  // The same skip on every rank: the leader's (mappings are page-aligned, so it is
  // the same everywhere; checked below).
  int skip = static_cast<int>((kAlign - reinterpret_cast<uintptr_t>(base) % kAlign) % kAlign);
  MPI_Bcast(&skip, 1, MPI_INT, 0, node_);
  base = reinterpret_cast<float*>(reinterpret_cast<char*>(base) + skip);
  if (reinterpret_cast<uintptr_t>(base) % kAlign != 0)
    throw Error(fmt("the node's shared window is mapped at different alignments on different "
                    "ranks (skip ", skip, " bytes); use --node-size 1"));
  theta_ = base;
  momentum_ = theta_ + np;
  sum_ = momentum_ + np;
  slots_ = sum_ + stride_;
  grad_slot_ = slots_ + static_cast<size_t>(local_rank_) * stride_;
  float* w16_area = slots_ + static_cast<size_t>(local_size_) * stride_;
  w16_ = n_w16 ? reinterpret_cast<uint16_t*>(w16_area) : nullptr;
  flags_ = reinterpret_cast<uint32_t*>(w16_area + nw16);
  {
    auto at = reinterpret_cast<uintptr_t>(w16_area + nw16 + nflags);
    sync_ = reinterpret_cast<SyncWord*>((at + 63) / 64 * 64);
  }
  slot_ptrs_.resize(static_cast<size_t>(local_size_));
  for (int k = 0; k < local_size_; ++k)
    slot_ptrs_[static_cast<size_t>(k)] = slots_ + static_cast<size_t>(k) * stride_;
  // This rank's segment of the buffer: equal parts, boundaries on 16 floats.
  const size_t per = round16((n_ + static_cast<size_t>(local_size_) - 1) /
                             static_cast<size_t>(local_size_));
  seg_a_ = std::min(n_, per * static_cast<size_t>(local_rank_));
  seg_b_ = std::min(n_, seg_a_ + per);
  MPI_Win_lock_all(MPI_MODE_NOCHECK, win_);
  if (local_size_ > kMaxLocalRanks)
    throw Error(fmt(local_size_, " ranks on one host; at most ", kMaxLocalRanks,
                    " share a model (use --node-size)"));
  // First touch: every rank zeroes (and so places, on a NUMA machine, near its own
  // core) what it writes every step: its gradient slot and its segment of theta,
  // momentum, the sums and the bf16 array; the leader zeroes the rest (padding, flags).
  {
    const size_t a = seg_a_, b = seg_b_, pa = std::min(a, n_params_), pb = std::min(b, n_params_);
    std::fill(theta_ + pa, theta_ + pb, 0.0f);
    std::fill(momentum_ + pa, momentum_ + pb, 0.0f);
    std::fill(sum_ + a, sum_ + b, 0.0f);
    std::fill(grad_slot_, grad_slot_ + stride_, 0.0f);
    if (w16_) {
      const size_t wa = std::min(a, n_w16), wb = std::min(b, n_w16);
      std::fill(w16_ + wa, w16_ + wb, uint16_t{0});
    }
    if (local_rank_ == 0) {
      std::fill(theta_ + n_params_, theta_ + np, 0.0f);
      std::fill(momentum_ + n_params_, momentum_ + np, 0.0f);
      std::fill(sum_ + n_, sum_ + stride_, 0.0f);
      if (w16_) std::fill(w16_ + n_w16, reinterpret_cast<uint16_t*>(flags_), uint16_t{0});
      std::fill(reinterpret_cast<float*>(flags_), reinterpret_cast<float*>(sync_), 0.0f);
      new (sync_) SyncWord{};
      for (int k = 0; k < local_size_; ++k) liveness::init(&sync_->alive[k]);
    }
  }
  MPI_Win_sync(win_);
  MPI_Barrier(node_);
  liveness::hold(&sync_->alive[local_rank_]);  // until this process ends
  // Ranks that each have a CPU poll for a bounded time before sleeping; when the
  // node's ranks outnumber the CPUs they may run on together (the union of their
  // affinity masks: mpirun binds each rank to ONE core, so a rank's own mask says
  // nothing), they sleep at once.
  {
    cpu_set_t mine, all;
    CPU_ZERO(&mine);
    if (sched_getaffinity(0, sizeof mine, &mine) != 0) CPU_SET(0, &mine);
    MPI_Allreduce(&mine, &all, static_cast<int>(sizeof(cpu_set_t)), MPI_BYTE, MPI_BOR, node_);
    spin_us_ = local_size_ <= CPU_COUNT(&all) ? 30.0 : 0.0;
    if (const char* e = std::getenv("RBM_BARRIER_SPIN_US"); e && *e) spin_us_ = std::atof(e);
  }
  MPI_Win_sync(win_);
  MPI_Barrier(node_);
  MPI_Win_sync(win_);
}

NodeShared::OutOfMemory::OutOfMemory(size_t n_bytes)
    : CollectiveError(fmt("cannot allocate ", n_bytes >> 20, " MB of shared memory (",
                          available_memory_bytes() >> 20, " MB available on this node)"),
                      exit_code::runtime),
      bytes(n_bytes) {}

size_t NodeShared::available_memory_bytes() {
  size_t avail = SIZE_MAX;
  if (FILE* f = std::fopen("/proc/meminfo", "r")) {
    char key[64];
    unsigned long long kb = 0;
    while (std::fscanf(f, "%63s %llu kB", key, &kb) == 2)
      if (std::strcmp(key, "MemAvailable:") == 0) avail = static_cast<size_t>(kb) << 10;
    std::fclose(f);
  }
  struct statvfs vfs {};
  if (statvfs("/dev/shm", &vfs) == 0)  // Open MPI backs the window with a /dev/shm file
    avail = std::min(avail, static_cast<size_t>(vfs.f_bavail) * vfs.f_frsize);
  return avail;
}

void NodeShared::broadcast_from_root(float* data, size_t n) const {
  if (leaders_ != MPI_COMM_NULL && nodes_ > 1)
    for (size_t off = 0; off < n; off += size_t{1} << 28)
      MPI_Bcast(data + off, static_cast<int>(std::min(n - off, size_t{1} << 28)), MPI_FLOAT, 0,
                leaders_);
  barrier();
}

NodeShared::~NodeShared() {
  // Freeing is collective: while an exception unwinds (a local error on its way to
  // MPI_Abort, or an error every rank raised) leave it to MPI_Finalize/MPI_Abort.
  if (std::uncaught_exceptions() > 0) return;
  if (win_ != MPI_WIN_NULL) {
    // Release this process's liveness mutex first: it is on glibc's per-thread list of
    // held robust mutexes, linked through the mutexes themselves, and the next robust
    // lock (a later NodeShared in the same process: rbm_bench's shapes) would write
    // into this window after it is unmapped (segfault).
    if (sync_) {
      MPI_Barrier(node_);  // nobody may see this rank as dead while it leaves
      pthread_mutex_unlock(&sync_->alive[local_rank_]);
    }
    MPI_Win_unlock_all(win_);
    MPI_Win_free(&win_);
  }
  if (leaders_ != MPI_COMM_NULL) MPI_Comm_free(&leaders_);
  if (node_ != MPI_COMM_NULL) MPI_Comm_free(&node_);
}

void NodeShared::barrier() const {
  if (local_size_ == 1) return;
  // Sense by generation: the last to arrive resets the count, bumps the generation
  // (release: publishes every write made before the barrier) and wakes the sleepers.
  const uint32_t gen = sync_->generation.load(std::memory_order_acquire);
  if (sync_->arrived.fetch_add(1, std::memory_order_acq_rel) ==
      static_cast<uint32_t>(local_size_ - 1)) {
    sync_->arrived.store(0, std::memory_order_relaxed);
    sync_->generation.fetch_add(1, std::memory_order_release);
    futex_wake_all(&sync_->generation);
    return;
  }
  if (spin_us_ > 0) {  // bounded polling: the others usually arrive within microseconds
    const double until = prof::now() + 1e-6 * spin_us_;
    do {
      for (int i = 0; i < 64; ++i) {
        if (sync_->generation.load(std::memory_order_acquire) != gen) return;
        _mm_pause();
      }
    } while (prof::now() < until);
  }
  // Sleep; every half second make sure no rank of this node has died (then the
  // barrier would never open: end the job instead, with MPI_Abort via the caller).
  const timespec half_second{0, 500000000};
  while (sync_->generation.load(std::memory_order_acquire) == gen) {
    futex_wait(&sync_->generation, gen, &half_second);
    if (sync_->generation.load(std::memory_order_acquire) != gen) break;
    for (int k = 0; k < local_size_; ++k)
      if (k != local_rank_ && liveness::died(&sync_->alive[k]))
        throw Error(fmt("local rank ", k, " of this node died during a step; stopping the job"));
  }
}

uint32_t NodeShared::reduce(const Update& update) {
  {
    prof::Scope w(prof::wait);
    barrier();  // 1. all slots written
  }
  const size_t a = seg_a_, b = seg_b_;
  const size_t ua = std::min(a, n_params_), ub = std::min(b, n_params_);
  const int L = local_size_;
  uint32_t flag = 0;
  if (nodes_ == 1) {
    // 2. fused: the counters of my segment are summed into `sum`; the parameters of my
    // segment are updated straight from the slots (summed in slot order, in cache).
    prof::Scope u(prof::update);
    for (size_t i = std::max(a, n_params_); i < b; ++i) {
      float s = slots_[i];
      for (int k = 1; k < L; ++k) s += slots_[static_cast<size_t>(k) * stride_ + i];
      sum_[i] = s;
    }
    flag = ub > ua ? update(ua, ub, slot_ptrs_.data(), L) : 0u;
  } else {
    {  // 2. my segment of the sum, slots added in a fixed order
      prof::Scope u(prof::update);
      if (b > a) {
        std::copy(slots_ + a, slots_ + b, sum_ + a);
        for (int k = 1; k < L; ++k) {
          const float* s = slots_ + static_cast<size_t>(k) * stride_;
          for (size_t i = a; i < b; ++i) sum_[i] += s[i];
        }
      }
    }
    {  // 3. one MPI_Allreduce of the fused buffer across the nodes
      prof::Scope w(prof::wait);
      barrier();
      if (leaders_ != MPI_COMM_NULL) {
        const double t0 = MPI_Wtime();
        MPI_Allreduce(MPI_IN_PLACE, sum_, static_cast<int>(n_), MPI_FLOAT, MPI_SUM, leaders_);
        comm_seconds_ += MPI_Wtime() - t0;
      }
      barrier();
    }
    // 4. my segment of the update (parameters only, not the counters)
    prof::Scope u(prof::update);
    const float* g = sum_;
    flag = ub > ua ? update(ua, ub, &g, 1) : 0u;
  }
  flags_[local_rank_] = flag;
  {
    prof::Scope w(prof::wait);
    barrier();  // 5. new theta and the counters visible
  }
  uint32_t any = 0;
  for (int k = 0; k < local_size_; ++k) any |= flags_[k];
  return any;
}

uint32_t NodeShared::reduce_overlapped(
    size_t buckets, const std::function<std::pair<size_t, size_t>(size_t)>& bucket,
    const std::function<void(size_t)>& produce,
    const Update& update) {
  if (nodes_ == 1) {  // nothing to overlap with: produce everything, then reduce()
    for (size_t j = 1; j < buckets; ++j) produce(j);
    return reduce(update);
  }
  std::vector<MPI_Request> reqs;
  reqs.reserve(buckets);
  const auto L = static_cast<size_t>(local_size_), l = static_cast<size_t>(local_rank_);
  for (size_t j = 0; j < buckets; ++j) {
    if (j > 0) produce(j);
    const auto [a, b] = bucket(j);
    barrier();  // bucket j written in every slot
    // my part of the bucket, slots added in the fixed order of reduce()
    const size_t per = (b - a + L - 1) / L, pa = std::min(b, a + l * per),
                 pb = std::min(b, pa + per);
    if (pb > pa) {
      std::copy(slots_ + pa, slots_ + pb, sum_ + pa);
      for (int k = 1; k < local_size_; ++k) {
        const float* s = slots_ + static_cast<size_t>(k) * stride_;
        for (size_t i = pa; i < pb; ++i) sum_[i] += s[i];
      }
    }
    barrier();  // bucket j summed on this node
    if (leaders_ != MPI_COMM_NULL) {
      const double t0 = MPI_Wtime();
      reqs.emplace_back();
      MPI_Iallreduce(MPI_IN_PLACE, sum_ + a, static_cast<int>(b - a), MPI_FLOAT, MPI_SUM,
                     leaders_, &reqs.back());
      int done = 0;
      MPI_Testall(static_cast<int>(reqs.size()), reqs.data(), &done, MPI_STATUSES_IGNORE);
      comm_seconds_ += MPI_Wtime() - t0;
    }
  }
  if (leaders_ != MPI_COMM_NULL) {
    const double t0 = MPI_Wtime();
    MPI_Waitall(static_cast<int>(reqs.size()), reqs.data(), MPI_STATUSES_IGNORE);
    comm_seconds_ += MPI_Wtime() - t0;
  }
  barrier();  // every node's sums complete
  const size_t ua = std::min(seg_a_, n_params_), ub = std::min(seg_b_, n_params_);
  const float* g = sum_;
  flags_[local_rank_] = ub > ua ? update(ua, ub, &g, 1) : 0u;
  barrier();  // new theta and all sums visible
  uint32_t any = 0;
  for (int k = 0; k < local_size_; ++k) any |= flags_[k];
  return any;
}

}  // namespace rbm
