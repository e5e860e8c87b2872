// Chooses the CPU kernels' capability once, on first use, the way ATen picks its own CPU
// kernels: the most capable one that was built and that the CPU supports, capped by
// ACTCAM_CPU_CAPABILITY (default, avx2 or avx512). A value that names no capability built
// here, or one this CPU lacks, gives a warning and the best supported capability instead, so
// an environment that outlives the machine it was written for never stops the program.
#include <ATen/ATen.h>
#include <torch/library.h>

#include <atomic>
#include <cstdlib>
#include <mutex>
#include <string>
#include <vector>

#include "kernels.h"

namespace actcam {
namespace cpu {
namespace {

struct Capability {
  const char* name;
  const KernelTable& (*table)();
  bool (*supported)();
};

bool always() { return true; }

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
// __builtin_cpu_supports also checks that the OS saves the wider registers (XCR0).
bool has_avx2() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
}
bool has_avx512() {
  return has_avx2() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
}
#endif

// The capabilities built into this library, least capable first.
const std::vector<Capability>& built() {
  static const std::vector<Capability> caps = {
      {"default", &default_::table, &always},
#if defined(ACTCAM_HAVE_AVX2)
      {"avx2", &avx2::table, &has_avx2},
#endif
#if defined(ACTCAM_HAVE_AVX512)
      {"avx512", &avx512::table, &has_avx512},
#endif
  };
  return caps;
}

std::string names(bool only_supported) {
  std::string s;
  for (const Capability& c : built()) {
    if (only_supported && !c.supported()) continue;
    s += s.empty() ? "" : ", ";
    s += c.name;
  }
  return s;
}

const Capability& best() {
  const Capability* b = &built().front();
  for (const Capability& c : built())
    if (c.supported()) b = &c;
  return *b;
}

const Capability* find(const std::string& name) {
  for (const Capability& c : built())
    if (name == c.name) return &c;
  return nullptr;
}

std::atomic<const KernelTable*> g_live{nullptr};
std::once_flag g_once;

void choose() {
  std::call_once(g_once, [] {
    const char* env = std::getenv("ACTCAM_CPU_CAPABILITY");
    const Capability* chosen = &best();
    if (env != nullptr && *env != '\0') {
      const Capability* want = find(env);
      if (want == nullptr) {
        TORCH_WARN("actcam: ACTCAM_CPU_CAPABILITY=", env, " names no CPU capability built here (", names(false),
                   "); using ", chosen->name);
      } else if (!want->supported()) {
        TORCH_WARN("actcam: ACTCAM_CPU_CAPABILITY=", env, " is not supported by this CPU (it supports ",
                   names(true), "); using ", chosen->name);
      } else {
        chosen = want;
      }
    }
    const KernelTable* expected = nullptr;
    g_live.compare_exchange_strong(expected, &chosen->table());
  });
}

std::string cpu_capability() { return kernels().name; }

// Tests only: switch every later kernel call to another capability. A kernel already running
// keeps the table it loaded.
std::string set_cpu_capability(std::string name) {
  choose();
  const Capability* c = find(name);
  TORCH_CHECK_VALUE(c != nullptr, "actcam: name must be a CPU capability built here (", names(false), "), got '",
                    name, "'");
  TORCH_CHECK_VALUE(c->supported(), "actcam: name must be a CPU capability this CPU supports (", names(true),
                    "), got '", name, "'");
  g_live.store(&c->table(), std::memory_order_release);
  return c->name;
}

}  // namespace

const KernelTable& kernels() {
  const KernelTable* t = g_live.load(std::memory_order_acquire);
  if (t == nullptr) {
    choose();
    t = g_live.load(std::memory_order_acquire);
  }
  return *t;
}

}  // namespace cpu
}  // namespace actcam

// No tensor arguments: a composite kernel is what the dispatcher finds for them.
TORCH_LIBRARY_IMPL(actcam, CompositeImplicitAutograd, m) {
  m.impl("cpu_capability", &actcam::cpu::cpu_capability);
  m.impl("_set_cpu_capability", &actcam::cpu::set_cpu_capability);
}
