// rbm/mpi_env.hpp — MPI start-up, rank-0 output and the error policy of every program.
//
// defines: rbm::MpiEnv, rbm::CollectiveError, rbm::agree, rbm::broadcast_string,
//          rbm::run_mpi_program,
//          rbm::run_program
//
// Error policy (README "Errors and exit codes"):
//  * An error that every rank sees identically (a bad flag, a bad dataset shape)
//    is a CollectiveError: rank 0 alone prints one line, every rank finalises MPI
//    and exits with the error's code (2 for usage errors).
//  * Any other exception on any rank (its shard unreadable, out of memory) is
//    printed by that rank as "<prog>: rank R: <message>" and ends the whole job
//    with MPI_Abort: the other ranks may be inside a collective and would hang.
#pragma once

#include <functional>
#include <string>

#include "rbm/errors.hpp"

namespace rbm {

struct MpiEnv {
  int rank = 0;
  int size = 1;
  bool root() const { return rank == 0; }
};

/// Thrown with the same message on every rank: rank 0 prints it, all exit cleanly.
class CollectiveError : public Error {
 public:
  CollectiveError(const std::string& msg, int code) : Error(msg, code) {}
};

/// Runs `check` on every rank. If it throws rbm::Error on any rank, every rank
/// throws CollectiveError with the message and code of the lowest failing rank.
void agree(const MpiEnv& env, const std::function<void()>& check);

/// World rank 0's `s` on every rank.
void broadcast_string(std::string& s);

/// MPI_Init, body, MPI_Finalize, with the error policy above. Returns the exit code.
int run_mpi_program(const char* prog, int argc, char** argv,
                    const std::function<int(const MpiEnv&)>& body);

/// Same policy for single-process tools: prints "<prog>: <message>", returns its code.
int run_program(const char* prog, const std::function<int()>& body);

}  // namespace rbm
