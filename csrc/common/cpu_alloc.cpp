#include "common/cpu_alloc.h"

#include <cstdlib>
#include <cstring>
#include <list>
#include <map>
#include <mutex>
#include <vector>

#include <sys/sysinfo.h>

#include <ATen/EmptyTensor.h>
#include <ATen/ops/empty.h>
#include <c10/core/Allocator.h>

// A bounded cache of freed large CPU outputs (see cpu_alloc.h).

namespace fastops::cpu {
namespace {

constexpr size_t kMinCachedBytes = size_t(4) << 20;

// RAM plus swap: no output larger than this can ever be written. Checked before allocating because
// with overcommit the allocation itself may succeed and the process is then killed while it fills.
size_t machine_memory_bytes() {
  static const size_t bytes = [] {
    struct sysinfo info{};
    if (sysinfo(&info) != 0) return SIZE_MAX;
    return static_cast<size_t>(info.totalram + info.totalswap) * info.mem_unit;
  }();
  return bytes;
}

struct Block {
  void* data;
  size_t bytes;  // capacity
  // while cached: its entries in OutputCache::free_ and OutputCache::lru_
  std::multimap<size_t, Block*>::iterator by_size;
  std::list<Block*>::iterator by_age;
};

class OutputCache final : public c10::Allocator {
 public:
  c10::DataPtr allocate(size_t n) override {
    Block* block = nullptr;
    if (n >= kMinCachedBytes && enabled_) {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = free_.lower_bound(n);
      if (it != free_.end() && it->first <= 2 * n) {  // best fit, wasting at most half
        block = it->second;
        forget(block);
      }
    }
    if (block == nullptr) {
      TORCH_CHECK(n <= machine_memory_bytes(), "fastops: out of memory: an output of ", n, " bytes (", n >> 30,
                  " GiB) exceeds this machine's memory (", machine_memory_bytes() >> 30, " GiB of RAM and swap)");
      void* data = n == 0 ? nullptr : std::aligned_alloc(64, (n + 63) / 64 * 64);  // torch's CPU alignment
      TORCH_CHECK(n == 0 || data != nullptr, "fastops: out of memory allocating ", n, " bytes");
      block = new Block{data, n, {}, {}};
    }
    return {block->data, block, &OutputCache::release, c10::Device(c10::DeviceType::CPU)};
  }

  void copy_data(void* dest, const void* src, std::size_t count) const override { default_copy_data(dest, src, count); }

  size_t clear() {
    std::list<Block*> blocks;
    size_t bytes = 0;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      blocks.swap(lru_);
      free_.clear();
      bytes = held_;
      held_ = 0;
    }
    for (Block* block : blocks) destroy(block);
    return bytes;
  }

  size_t held() {
    std::lock_guard<std::mutex> lock(mutex_);
    return held_;
  }

  static OutputCache& get() {
    static OutputCache* cache = new OutputCache();  // never destroyed: tensors may outlive static teardown
    return *cache;
  }

 private:
  OutputCache() {
    const char* env = std::getenv("FASTOPS_OUTPUT_CACHE");
    enabled_ = env == nullptr || std::strcmp(env, "0") != 0;
  }

  static void destroy(Block* block) {
    std::free(block->data);
    delete block;
  }

  // Removes a cached block from the cache's indexes (the caller holds the lock).
  void forget(Block* block) {
    free_.erase(block->by_size);
    lru_.erase(block->by_age);
    held_ -= block->bytes;
  }

  // A freed output is kept; if that passes the cap, the blocks freed longest ago are released
  // first, so the cache follows the sizes in use now instead of keeping stale ones forever.
  static void release(void* ctx) {
    Block* block = static_cast<Block*>(ctx);
    OutputCache& cache = get();
    if (block->bytes < kMinCachedBytes || block->bytes > kOutputCacheBytes || !cache.enabled_) {
      destroy(block);
      return;
    }
    std::vector<Block*> evicted;
    {
      std::lock_guard<std::mutex> lock(cache.mutex_);
      while (cache.held_ + block->bytes > kOutputCacheBytes) {
        Block* oldest = cache.lru_.front();
        cache.forget(oldest);
        evicted.push_back(oldest);
      }
      block->by_size = cache.free_.emplace(block->bytes, block);
      block->by_age = cache.lru_.insert(cache.lru_.end(), block);
      cache.held_ += block->bytes;
    }
    for (Block* b : evicted) destroy(b);  // outside the lock
  }

  std::mutex mutex_;
  std::multimap<size_t, Block*> free_;  // unused blocks by capacity
  std::list<Block*> lru_;               // the same blocks, oldest release first
  size_t held_ = 0;
  bool enabled_ = true;
};

}  // namespace

at::Tensor cached_output(at::IntArrayRef sizes, const at::TensorOptions& options) {
  if (!options.device().is_cpu()) return at::empty(sizes, options);
  return at::detail::empty_generic(sizes, &OutputCache::get(), c10::DispatchKeySet(c10::DispatchKey::CPU),
                                   c10::typeMetaToScalarType(options.dtype()), options.memory_format_opt());
}

at::Tensor cached_zeros(at::IntArrayRef sizes, const at::TensorOptions& options) {
  return cached_output(sizes, options).zero_();
}

at::Tensor cached_contiguous(const at::Tensor& t, at::MemoryFormat format) {
  if (t.is_contiguous(format)) return t;
  return cached_output(t.sizes(), t.options().memory_format(format)).copy_(t);
}

size_t release_output_cache() { return OutputCache::get().clear(); }

size_t output_cache_bytes() { return OutputCache::get().held(); }

}  // namespace fastops::cpu
