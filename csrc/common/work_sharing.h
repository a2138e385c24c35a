// Parallel loops (COCO evaluation, linear assignment, panoptic quality) that never wait for a
// thread that has not started.
//
// An OpenMP region (at::parallel_for) splits the work among its team up front and ends when every
// thread of the team has finished: on a busy machine (data loader workers, other jobs) a thread
// that is not scheduled for a time slice stalls the whole call by milliseconds, longer than these
// loops take. Here the calling thread and helpers from the inter-op pool (at::launch) take chunks
// from a shared counter; a helper that starts late finds none left, and the caller waits only for
// chunks a helper is running. Each chunk writes its own outputs, so the results do not depend on
// which thread ran what.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>

#include <ATen/Parallel.h>

#include "common/macros.h"

namespace fastops::coco_eval {
inline namespace FASTOPS_ISA_NAMESPACE {

// f(begin, end) for the chunks [c * grain, min(n, (c + 1) * grain)) of [0, n), in parallel.
template <typename F>
void share_work(int64_t n, int64_t grain, const F& f) {
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  const int64_t chunks = (n + grain - 1) / grain;
  const int64_t threads = std::min<int64_t>(at::get_num_threads(), chunks);
  if (threads <= 1 || at::in_parallel_region()) {
    for (int64_t c = 0; c < chunks; ++c) f(c * grain, std::min(n, (c + 1) * grain));
    return;
  }
  struct State {
    std::atomic<int64_t> next{0}, done{0};
    std::mutex m;
    std::exception_ptr error;
  };
  auto state = std::make_shared<State>();
  // A helper touches `f` only for a chunk it took, and the caller returns only once every chunk is
  // done, so `f` outlives every use; a helper that starts after that sees no chunk and leaves.
  auto work = [state, chunks, grain, n, &f]() {
    for (;;) {
      const int64_t c = state->next.fetch_add(1, std::memory_order_relaxed);
      if (c >= chunks) return;
      try {
        f(c * grain, std::min(n, (c + 1) * grain));
      } catch (...) {
        std::lock_guard<std::mutex> lock(state->m);
        if (!state->error) state->error = std::current_exception();
      }
      state->done.fetch_add(1, std::memory_order_release);
    }
  };
  for (int64_t t = 1; t < threads; ++t) at::launch(work);
  work();
  while (state->done.load(std::memory_order_acquire) < chunks) std::this_thread::yield();
  if (state->error) std::rethrow_exception(state->error);
}

}  // namespace FASTOPS_ISA_NAMESPACE
}  // namespace fastops::coco_eval
