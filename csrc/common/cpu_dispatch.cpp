#include "common/cpu_dispatch.h"

#include <atomic>
#include <cstdlib>

namespace fastops::cpu {
namespace {

IsaLevel detect() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
      __builtin_cpu_supports("avx512dq")) {
    return kIsaAVX512;
  }
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return kIsaAVX2;
#endif
  return kIsaDefault;
}

std::atomic<int>& active() {
  static std::atomic<int> level{[] {
    const char* env = std::getenv("FASTOPS_CPU_ISA");
    const IsaLevel cap = (env == nullptr || *env == '\0') ? kIsaAVX512 : parse_isa(env);
    const IsaLevel found = detected_isa();
    return static_cast<int>(cap < found ? cap : found);
  }()};
  return level;
}

}  // namespace

IsaLevel detected_isa() {
  static const IsaLevel level = detect();
  return level;
}

IsaLevel active_isa() { return static_cast<IsaLevel>(active().load(std::memory_order_relaxed)); }

IsaLevel set_isa_cap(IsaLevel cap) {
  TORCH_CHECK_VALUE(cap >= kIsaDefault && cap < kNumIsaLevels, "invalid CPU ISA level ", int(cap));
  const IsaLevel found = detected_isa();
  active().store(cap < found ? cap : found);
  return active_isa();
}

IsaLevel parse_isa(std::string_view name) {
  if (name == "default") return kIsaDefault;
  if (name == "avx2") return kIsaAVX2;
  if (name == "avx512") return kIsaAVX512;
  TORCH_CHECK_VALUE(false, "CPU instruction set must be default, avx2 or avx512, got '", name, "'");
}

const char* isa_name(IsaLevel level) {
  switch (level) {
    case kIsaDefault: return "default";
    case kIsaAVX2: return "avx2";
    case kIsaAVX512: return "avx512";
    default: return "unknown";
  }
}

}  // namespace fastops::cpu
