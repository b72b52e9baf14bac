// cuda_emu.h — run CUDA C kernels on the CPU with real block/warp semantics.
//
// rawgan/runtime/emulator.py compiles a kernels/*.cu file as C++17 with this header
// force-included (g++ -include), plus one generated trampoline per kernel, into a shared library.
// rawgan_emu_launch() below then runs a grid:
//
//   * blocks one after another (forward, or reverse with schedule=1);
//   * inside a block, every CUDA thread is a fiber with its own stack. The scheduler resumes the
//     runnable fibers in thread order (or reverse); a fiber runs until it finishes or blocks in
//     __syncthreads() / a warp collective. When every live thread of the block waits at
//     __syncthreads() they are all released; when every lane named in a warp collective's mask
//     has arrived, those lanes are released. So no thread ever passes a barrier early, and a
//     missing barrier shows up as a wrong result under one of the two schedules.
//   * A barrier that can never complete (some threads exited, or wait elsewhere) is reported as an
//     error with block and thread coordinates, never a hang.
//   * static __shared__ variables live in the ELF section "rawgan_shared"; that section and the
//     dynamic shared buffer are filled with 0xFF bytes (NaN for float/double) before each block.
//
// A fiber switch is ~6 register pushes and a stack swap (hand-written for x86-64; ucontext
// elsewhere). Threads are started by "runner" fibers that call the kernel for one thread after
// another (see runner_main): a thread that never blocks costs a function call, not a switch, and
// barrier-free kernels run on one hot stack per block.
#pragma once

#include <math.h>
#include <stdint.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <cmath>
#include <cstdint>

#if !defined(__x86_64__)
#include <ucontext.h>
#endif

// NVRTC defines none of these C macros (no <math.h>); undefine them so that code using them fails
// here too rather than only on the GPU. Use __int_as_float(0x7f800000) for +inf, nanf("") or
// __int_as_float(0x7fffffff) for NaN, and spell constants out (3.14159265358979f).
#undef INFINITY
#undef NAN
#undef HUGE_VAL
#undef HUGE_VALF
#undef M_PI
#undef M_PI_2
#undef M_PI_4
#undef M_1_PI
#undef M_2_PI
#undef M_E
#undef M_LN2
#undef M_LN10
#undef M_LOG2E
#undef M_LOG10E
#undef M_SQRT2
#undef M_SQRT1_2
#undef M_2_SQRTPI

#define RAWGAN_EMU_EXPORT extern "C" __attribute__((visibility("default")))

// ----------------------------------------------------------------------------------------------
// CUDA keywords
// ----------------------------------------------------------------------------------------------
#define __global__
#define __device__
#define __host__
#define __constant__
#define __forceinline__ inline __attribute__((always_inline))
#define __noinline__ __attribute__((noinline))
#define __restrict__ __restrict
#define __launch_bounds__(...)
#define __align__(n) alignas(n)
// Block-shared variables are function statics in their own section (poisoned per block).
// `extern __shared__ T name[];` (dynamic) is rewritten by emulator.py before compiling.
#define __shared__ static __attribute__((section("rawgan_shared"), aligned(16)))

struct uint3 { unsigned int x, y, z; };
struct dim3 {
    unsigned int x, y, z;
    constexpr dim3(unsigned int x_ = 1, unsigned int y_ = 1, unsigned int z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct alignas(8) float2 { float x, y; };
struct alignas(16) float4 { float x, y, z, w; };
struct alignas(8) int2 { int x, y; };
struct alignas(16) int4 { int x, y, z, w; };
struct alignas(16) double2 { double x, y; };
static inline float2 make_float2(float x, float y) { return {x, y}; }
static inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
static inline int2 make_int2(int x, int y) { return {x, y}; }
static inline int4 make_int4(int x, int y, int z, int w) { return {x, y, z, w}; }
static inline double2 make_double2(double x, double y) { return {x, y}; }

// Built-in variables: plain globals of this shared library, set by the scheduler before it
// resumes a fiber (the switch is an opaque call, so kernels re-read them after any barrier).
uint3 threadIdx, blockIdx;
dim3 blockDim, gridDim;
static constexpr int warpSize = 32;

// ----------------------------------------------------------------------------------------------
// Math (CUDA's float functions are the C library's; intrinsics map to the accurate versions)
// ----------------------------------------------------------------------------------------------
static inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
static inline double rsqrt(double x) { return 1.0 / sqrt(x); }
// glibc already declares __expf & co. (its internal names), so these are macros.
#define __expf(x) expf(x)
#define __logf(x) logf(x)
#define __log2f(x) log2f(x)
#define __sinf(x) sinf(x)
#define __cosf(x) cosf(x)
#define __tanf(x) tanf(x)
#define __powf(x, y) powf(x, y)
static inline float __fdividef(float a, float b) { return a / b; }
static inline float __frcp_rn(float x) { return 1.0f / x; }
static inline float __fsqrt_rn(float x) { return sqrtf(x); }
static inline float __frsqrt_rn(float x) { return 1.0f / sqrtf(x); }
static inline float __fadd_rn(float a, float b) { return a + b; }
static inline float __fmul_rn(float a, float b) { return a * b; }
static inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
static inline float __saturatef(float x) { return x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : (x == x ? x : 0.0f)); }
static inline int __float2int_rn(float x) { return (int)nearbyintf(x); }
static inline int __float2int_rz(float x) { return (int)x; }
static inline int __float2int_rd(float x) { return (int)floorf(x); }
static inline int __float2int_ru(float x) { return (int)ceilf(x); }
static inline unsigned int __float2uint_rn(float x) { return (unsigned int)nearbyintf(x); }
static inline float __int2float_rn(int x) { return (float)x; }
static inline float __uint2float_rn(unsigned int x) { return (float)x; }
static inline int __double2int_rn(double x) { return (int)nearbyint(x); }
static inline float __double2float_rn(double x) { return (float)x; }
static inline float __uint_as_float(unsigned int x) { float f; memcpy(&f, &x, 4); return f; }
static inline unsigned int __float_as_uint(float x) { unsigned int u; memcpy(&u, &x, 4); return u; }
static inline float __int_as_float(int x) { float f; memcpy(&f, &x, 4); return f; }
static inline int __float_as_int(float x) { int i; memcpy(&i, &x, 4); return i; }
static inline double __longlong_as_double(long long x) { double d; memcpy(&d, &x, 8); return d; }
static inline long long __double_as_longlong(double x) { long long i; memcpy(&i, &x, 8); return i; }
static inline unsigned int __umulhi(unsigned int a, unsigned int b) { return (unsigned int)(((unsigned long long)a * b) >> 32); }
static inline int __mulhi(int a, int b) { return (int)(((long long)a * b) >> 32); }
static inline unsigned long long __umul64hi(unsigned long long a, unsigned long long b) { return (unsigned long long)(((unsigned __int128)a * b) >> 64); }
static inline int __popc(unsigned int x) { return __builtin_popcount(x); }
static inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
static inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz((unsigned int)x); }
static inline int __ffs(int x) { return __builtin_ffs(x); }
static inline unsigned int __brev(unsigned int x) {
    x = ((x >> 1) & 0x55555555u) | ((x & 0x55555555u) << 1);
    x = ((x >> 2) & 0x33333333u) | ((x & 0x33333333u) << 2);
    x = ((x >> 4) & 0x0F0F0F0Fu) | ((x & 0x0F0F0F0Fu) << 4);
    x = ((x >> 8) & 0x00FF00FFu) | ((x & 0x00FF00FFu) << 8);
    return (x >> 16) | (x << 16);
}

// CUDA's overloaded min/max (same-type arguments; float/double mixes promote).
#define RAWGAN_EMU_MINMAX(T)                                    \
    static inline T min(T a, T b) { return a < b ? a : b; }     \
    static inline T max(T a, T b) { return a > b ? a : b; }
RAWGAN_EMU_MINMAX(int)
RAWGAN_EMU_MINMAX(unsigned int)
RAWGAN_EMU_MINMAX(long long)
RAWGAN_EMU_MINMAX(unsigned long long)
RAWGAN_EMU_MINMAX(long)
RAWGAN_EMU_MINMAX(unsigned long)
#undef RAWGAN_EMU_MINMAX
static inline float min(float a, float b) { return fminf(a, b); }
static inline float max(float a, float b) { return fmaxf(a, b); }
static inline double min(double a, double b) { return fmin(a, b); }
static inline double max(double a, double b) { return fmax(a, b); }
static inline double min(float a, double b) { return fmin(a, b); }
static inline double min(double a, float b) { return fmin(a, b); }
static inline double max(float a, double b) { return fmax(a, b); }
static inline double max(double a, float b) { return fmax(a, b); }

template <class T> static inline T __ldg(const T* p) { return *p; }

// Memory fences: fibers of one OS thread see each other's writes immediately.
static inline void __threadfence() {}
static inline void __threadfence_block() {}

// ----------------------------------------------------------------------------------------------
// Atomics: fibers never run concurrently, so a plain read-modify-write is atomic.
// ----------------------------------------------------------------------------------------------
template <class T> static inline T atomicAdd(T* p, T v) { T old = *p; *p = old + v; return old; }
template <class T> static inline T atomicSub(T* p, T v) { T old = *p; *p = old - v; return old; }
template <class T> static inline T atomicExch(T* p, T v) { T old = *p; *p = v; return old; }
template <class T> static inline T atomicMax(T* p, T v) { T old = *p; *p = old > v ? old : v; return old; }
template <class T> static inline T atomicMin(T* p, T v) { T old = *p; *p = old < v ? old : v; return old; }
template <class T> static inline T atomicAnd(T* p, T v) { T old = *p; *p = old & v; return old; }
template <class T> static inline T atomicOr(T* p, T v) { T old = *p; *p = old | v; return old; }
template <class T> static inline T atomicXor(T* p, T v) { T old = *p; *p = old ^ v; return old; }
template <class T> static inline T atomicCAS(T* p, T cmp, T v) { T old = *p; if (old == cmp) *p = v; return old; }
static inline unsigned int atomicInc(unsigned int* p, unsigned int lim) { unsigned int o = *p; *p = o >= lim ? 0 : o + 1; return o; }

// ----------------------------------------------------------------------------------------------
// Fibers and the block scheduler
// ----------------------------------------------------------------------------------------------
namespace rawgan_emu {

enum State : unsigned char { kNotStarted, kRunnable, kAtBlockBarrier, kAtWarpBarrier, kExited };

struct Fiber {
    void* sp;          // saved stack pointer while suspended (x86-64 switch)
    char* stack;       // top of the runner stack it runs on, nullptr unless started and alive
    State state;
    unsigned int mask; // mask of the warp collective it waits in
    uint3 tid;         // its threadIdx
#if !defined(__x86_64__)
    ucontext_t ctx;
#endif
};

constexpr int kMaxThreads = 1024;
constexpr int kWarps = kMaxThreads / 32;

struct Launch {
    void (*tramp)(void**);
    void** args;
    int nthreads;      // threads per block
    int cur;           // linear index of the running thread
    int next_start;    // position (in schedule order) of the next thread to start
    bool reverse;      // schedule order: reverse thread order
    char* new_runner;  // stack handed to a runner fiber that is starting
    int alive;         // threads of the block not yet exited
    int at_barrier;    // threads waiting in __syncthreads
    unsigned int exited[kWarps];
    unsigned int warp_waiting[kWarps];
    unsigned int warp_gen[kMaxThreads];          // per-lane count of warp collectives done
    unsigned long long slots[2][kMaxThreads];    // warp collective exchange, double-buffered
    Fiber fibers[kMaxThreads];
    bool failed;
    char error[1024];
};

static Launch g;               // one launch at a time per library (Python holds a lock)
static void* g_sched_sp;       // scheduler's saved stack pointer
#if !defined(__x86_64__)
static ucontext_t g_sched_ctx;
#endif
static size_t g_stack_size = 256 * 1024;
static char* g_stack_pool[kMaxThreads + 1];  // tops of free stacks (each with a guard page below it)
static int g_stack_free = 0;
static int g_stacks_made = 0;
unsigned char* g_dyn_smem = nullptr;    // dynamic shared memory of the current launch

extern "C" char __start_rawgan_shared[] __attribute__((weak, visibility("hidden")));
extern "C" char __stop_rawgan_shared[] __attribute__((weak, visibility("hidden")));

static inline size_t static_smem_bytes() {
    return (__start_rawgan_shared && __stop_rawgan_shared) ? size_t(__stop_rawgan_shared - __start_rawgan_shared) : 0;
}

#if defined(__x86_64__)
// void rawgan_emu_switch(void** save_sp, void* new_sp): push callee-saved registers, save the
// stack pointer, load the other one, pop its registers, return into it.
extern "C" void rawgan_emu_switch(void** save_sp, void* new_sp);
__asm__(
    ".text\n"
    ".p2align 4\n"
    ".hidden rawgan_emu_switch\n"
    ".type rawgan_emu_switch,@function\n"
    "rawgan_emu_switch:\n"
    "  pushq %rbp\n  pushq %rbx\n  pushq %r12\n  pushq %r13\n  pushq %r14\n  pushq %r15\n"
    "  movq %rsp, (%rdi)\n"
    "  movq %rsi, %rsp\n"
    "  popq %r15\n  popq %r14\n  popq %r13\n  popq %r12\n  popq %rbx\n  popq %rbp\n"
    "  ret\n"
    ".size rawgan_emu_switch, .-rawgan_emu_switch\n");
#endif

static inline unsigned int lane_id() { return unsigned(g.cur) & 31u; }

static void fail(const char* fmt, const char* what) {
    if (!g.failed) {
        g.failed = true;
        snprintf(g.error, sizeof g.error, fmt, what);
    }
}

// Suspend the running fiber and return to the scheduler.
static inline void yield_to_scheduler() {
    Fiber& f = g.fibers[g.cur];
#if defined(__x86_64__)
    rawgan_emu_switch(&f.sp, g_sched_sp);
#else
    swapcontext(&f.ctx, &g_sched_ctx);
#endif
}


// Returns the top of a free stack. Stack tops are "coloured": offset by a different multiple of
// 64 bytes below a page boundary, so the hot top frames of many fibers do not all fall into the
// same L1 cache set (stacks a power of two apart would, and thrash on every barrier).
static char* new_stack() {
    if (g_stack_free > 0) return g_stack_pool[--g_stack_free];
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    char* mem = (char*)mmap(nullptr, g_stack_size + page, PROT_READ | PROT_WRITE,
                            MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (mem == MAP_FAILED) return nullptr;
    mprotect(mem, page, PROT_NONE);  // guard page: a stack overflow faults instead of corrupting
    size_t colour = size_t((g_stacks_made * 37) % 64) * 64;
    g_stacks_made++;
    return mem + page + g_stack_size - colour;
}

// A runner fiber starts the not-yet-started threads of the block one after another, in schedule
// order, calling the kernel directly for each: a thread that finishes without blocking costs no
// context switch. When a thread blocks (barrier, warp collective) the runner's stack stays with
// it and the scheduler starts a new runner for the threads after it; when a resumed thread
// finishes, its runner goes on with unstarted threads if any, else gives its stack back.
[[noreturn]] static void runner_main() {
    char* const my_stack = g.new_runner;
    const int n = g.nthreads;
    while (g.next_start < n) {
        const int i = g.next_start++;
        const int t = g.reverse ? n - 1 - i : i;
        Fiber& f = g.fibers[t];
        f.state = kRunnable;
        f.stack = my_stack;
        g.cur = t;
        threadIdx = f.tid;
        g.tramp(g.args);  // may suspend and resume any number of times
        f.state = kExited;
        f.stack = nullptr;
        g.alive--;
        g.exited[t >> 5] |= 1u << (t & 31);
    }
    g_stack_pool[g_stack_free++] = my_stack;  // safe: nobody runs on it until we switch away
#if defined(__x86_64__)
    void* dead_sp;
    rawgan_emu_switch(&dead_sp, g_sched_sp);
#else
    static ucontext_t dead_ctx;
    swapcontext(&dead_ctx, &g_sched_ctx);
#endif
    __builtin_unreachable();
}

#if !defined(__x86_64__)
static ucontext_t g_runner_ctx;
#endif

// Start a runner fiber on a free stack; returns when some thread blocks or the runner is done.
static bool start_runner() {
    char* stack = new_stack();
    if (!stack) return false;
    g.new_runner = stack;
#if defined(__x86_64__)
    // Frame popped by rawgan_emu_switch: 6 registers, then "return" into runner_main with the
    // stack aligned as if runner_main had been called (rsp % 16 == 8 at entry).
    void** top = (void**)stack;
    *--top = nullptr;                 // fake return address of runner_main
    *--top = (void*)&runner_main;
    for (int i = 0; i < 6; i++) *--top = nullptr;
    rawgan_emu_switch(&g_sched_sp, top);
#else
    getcontext(&g_runner_ctx);
    g_runner_ctx.uc_stack.ss_sp = stack - (g_stack_size - 4096);
    g_runner_ctx.uc_stack.ss_size = g_stack_size - 4096;
    g_runner_ctx.uc_link = nullptr;
    makecontext(&g_runner_ctx, (void (*)())runner_main, 0);
    swapcontext(&g_sched_ctx, &g_runner_ctx);
#endif
    return true;
}

static inline void resume(int t) {
    Fiber& f = g.fibers[t];
    g.cur = t;
    threadIdx = f.tid;
#if defined(__x86_64__)
    rawgan_emu_switch(&g_sched_sp, f.sp);
#else
    swapcontext(&g_sched_ctx, &f.ctx);
#endif
}

static void describe_thread(char* buf, size_t n, int t) {
    unsigned int bx = blockDim.x, by = blockDim.y;
    snprintf(buf, n, "block (%u,%u,%u) thread (%u,%u,%u)", blockIdx.x, blockIdx.y, blockIdx.z,
             unsigned(t) % bx, (unsigned(t) / bx) % by, unsigned(t) / (bx * by));
}

// Release the lanes of warp w whose collective is complete. Returns how many were released.
static int release_warp(int w) {
    int released = 0;
    int first = w * 32;
    int nlanes = g.nthreads - first < 32 ? g.nthreads - first : 32;
    unsigned int exists = nlanes == 32 ? 0xFFFFFFFFu : ((1u << nlanes) - 1u);
    unsigned int pending = g.warp_waiting[w];
    while (pending) {
        int lane = __builtin_ctz(pending);
        unsigned int mask = g.fibers[first + lane].mask & exists;
        pending &= ~mask;
        pending &= ~(1u << lane);
        if ((g.warp_waiting[w] & mask) != mask) continue;  // not all arrived yet
        bool same = true;
        for (unsigned int m = mask; m; m &= m - 1)
            same &= g.fibers[first + __builtin_ctz(m)].mask == g.fibers[first + lane].mask;
        if (!same) continue;  // reported as a deadlock if nothing else can progress
        for (unsigned int m = mask; m; m &= m - 1) g.fibers[first + __builtin_ctz(m)].state = kRunnable;
        g.warp_waiting[w] &= ~mask;
        released += __builtin_popcount(mask);
    }
    return released;
}

static void report_deadlock() {
    char who[128];
    int t_block = -1, t_warp = -1;
    for (int t = 0; t < g.nthreads; t++) {
        if (g.fibers[t].state == kAtBlockBarrier && t_block < 0) t_block = t;
        if (g.fibers[t].state == kAtWarpBarrier && t_warp < 0) t_warp = t;
    }
    if (t_warp >= 0) {
        describe_thread(who, sizeof who, t_warp);
        char msg[512];
        snprintf(msg, sizeof msg,
                 "deadlock: %s waits in a warp collective (__shfl*_sync/__syncwarp/__ballot_sync, "
                 "mask 0x%08x) that not every lane of its mask reaches (lanes exited: 0x%08x, "
                 "waiting: 0x%08x; %d threads wait in __syncthreads)",
                 who, g.fibers[t_warp].mask, g.exited[t_warp >> 5], g.warp_waiting[t_warp >> 5], g.at_barrier);
        fail("%s", msg);
    } else if (t_block >= 0) {
        describe_thread(who, sizeof who, t_block);
        char msg[512];
        snprintf(msg, sizeof msg,
                 "barrier divergence: %d of %d threads wait in __syncthreads() (first: %s) but %d "
                 "threads of the block exited without reaching it",
                 g.at_barrier, g.nthreads, who, g.nthreads - g.alive);
        fail("%s", msg);
    } else {
        fail("%s", "internal scheduler error: no runnable thread");
    }
}

// Run one block to completion. Returns false on error (g.error set).
static bool run_block(int reverse) {
    const int n = g.nthreads;
    g.alive = n;
    g.at_barrier = 0;
    for (int w = 0; w < kWarps; w++) { g.exited[w] = 0; g.warp_waiting[w] = 0; }
    for (int t = 0; t < n; t++) {
        g.fibers[t].state = kNotStarted;
        g.fibers[t].stack = nullptr;
        g.warp_gen[t] = 0;
    }
    g.next_start = 0;
    g.reverse = reverse != 0;
    while (true) {
        for (int i = 0; i < n; i++) {
            int t = reverse ? n - 1 - i : i;
            State st = g.fibers[t].state;
            if (st == kNotStarted) {
                if (!start_runner()) { fail("%s", "out of memory for fiber stacks"); return false; }
            } else if (st == kRunnable) {
                resume(t);
            } else {
                continue;
            }
            if (g.failed) return false;
        }
        if (g.alive == 0) return true;
        int released = 0;
        for (int w = 0; w < (n + 31) / 32; w++)
            if (g.warp_waiting[w]) released += release_warp(w);
        if (g.at_barrier > 0 && g.at_barrier == g.alive) {
            if (g.alive != n) { report_deadlock(); return false; }
            for (int t = 0; t < n; t++) g.fibers[t].state = kRunnable;
            g.at_barrier = 0;
            released += n;
        }
        if (released == 0) { report_deadlock(); return false; }
    }
}

// Block the current lane in a warp collective over `mask` until all lanes of the mask arrive.
static inline void warp_barrier(unsigned int mask, const char* what) {
    unsigned int lane = lane_id();
    if (!(mask & (1u << lane))) {
        char who[128], msg[300];
        describe_thread(who, sizeof who, g.cur);
        snprintf(msg, sizeof msg, "%s calls %s with mask 0x%08x that does not include its own lane %u",
                 who, what, mask, lane);
        fail("%s", msg);
        yield_to_scheduler();  // the scheduler stops at the failure; never resumed
    }
    Fiber& f = g.fibers[g.cur];
    f.mask = mask;
    f.state = kAtWarpBarrier;
    g.warp_waiting[g.cur >> 5] |= 1u << lane;
    yield_to_scheduler();
}

static constexpr unsigned long long kPoison = ~0ull;

// Exchange one 64-bit value among the lanes of `mask`; returns the value lane `src` (within this
// warp) contributed, or poison (all bits set) if `src` does not exist or does not take part.
static inline unsigned long long exchange(unsigned int mask, unsigned long long value, int src, const char* what) {
    int t = g.cur;
    unsigned int buf = g.warp_gen[t]++ & 1u;
    g.slots[buf][t] = value;
    warp_barrier(mask, what);
    int first = t & ~31;
    if (src < 0 || src > 31 || first + src >= g.nthreads || !(mask & (1u << src))) return kPoison;
    return g.slots[buf][first + src];
}

template <class T> static inline unsigned long long to_bits(T v) {
    static_assert(sizeof(T) <= 8, "warp shuffle of a type wider than 8 bytes");
    unsigned long long b = 0;
    memcpy(&b, &v, sizeof(T));
    return b;
}
template <class T> static inline T from_bits(unsigned long long b) { T v; memcpy(&v, &b, sizeof(T)); return v; }

}  // namespace rawgan_emu

// ----------------------------------------------------------------------------------------------
// Block and warp synchronisation
// ----------------------------------------------------------------------------------------------
static inline void __syncthreads() {
    using namespace rawgan_emu;
    g.fibers[g.cur].state = kAtBlockBarrier;
    g.at_barrier++;
    yield_to_scheduler();
}
static inline void __syncwarp(unsigned int mask = 0xFFFFFFFFu) {
    rawgan_emu::exchange(mask, 0, 0, "__syncwarp");
}
static inline unsigned int __activemask() {
    using namespace rawgan_emu;
    int first = g.cur & ~31, n = g.nthreads - first < 32 ? g.nthreads - first : 32;
    return (n == 32 ? 0xFFFFFFFFu : (1u << n) - 1u) & ~g.exited[g.cur >> 5];
}

// width must be a power of two <= 32; lanes are grouped in segments of `width`.
template <class T> static inline T __shfl_sync(unsigned int mask, T var, int src, int width = 32) {
    using namespace rawgan_emu;
    int lane = int(lane_id());
    int s = (lane & ~(width - 1)) + (src & (width - 1));
    return from_bits<T>(exchange(mask, to_bits(var), s, "__shfl_sync"));
}
template <class T> static inline T __shfl_down_sync(unsigned int mask, T var, unsigned int delta, int width = 32) {
    using namespace rawgan_emu;
    int lane = int(lane_id());
    int s = lane + int(delta);
    if ((s & ~(width - 1)) != (lane & ~(width - 1))) s = lane;  // beyond the segment: own value
    return from_bits<T>(exchange(mask, to_bits(var), s, "__shfl_down_sync"));
}
template <class T> static inline T __shfl_up_sync(unsigned int mask, T var, unsigned int delta, int width = 32) {
    using namespace rawgan_emu;
    int lane = int(lane_id());
    int s = lane - int(delta);
    if (s < (lane & ~(width - 1))) s = lane;
    return from_bits<T>(exchange(mask, to_bits(var), s, "__shfl_up_sync"));
}
template <class T> static inline T __shfl_xor_sync(unsigned int mask, T var, int lane_mask, int width = 32) {
    using namespace rawgan_emu;
    int lane = int(lane_id());
    int s = lane ^ lane_mask;
    if ((s & ~(width - 1)) != (lane & ~(width - 1))) s = lane;
    return from_bits<T>(exchange(mask, to_bits(var), s, "__shfl_xor_sync"));
}
static inline unsigned int __ballot_sync(unsigned int mask, int pred) {
    using namespace rawgan_emu;
    int t = g.cur;
    unsigned int buf = g.warp_gen[t]++ & 1u;
    g.slots[buf][t] = pred != 0;
    warp_barrier(mask, "__ballot_sync");
    int first = t & ~31;
    unsigned int out = 0;
    for (unsigned int m = mask; m; m &= m - 1) {
        int l = __builtin_ctz(m);
        if (first + l < g.nthreads && g.slots[buf][first + l]) out |= 1u << l;
    }
    return out;
}
static inline int __any_sync(unsigned int mask, int pred) { return __ballot_sync(mask, pred) != 0; }
static inline int __all_sync(unsigned int mask, int pred) {
    return __ballot_sync(mask, pred) == (mask & __activemask());
}

// __trap() and a failed assert() stop the launch with an error instead of killing the process.
static inline void rawgan_emu_trap(const char* what) {
    using namespace rawgan_emu;
    char who[128], msg[600];
    describe_thread(who, sizeof who, g.cur);
    snprintf(msg, sizeof msg, "%s: %s", who, what);
    fail("%s", msg);
    yield_to_scheduler();
    __builtin_unreachable();
}
#define __trap() rawgan_emu_trap("__trap() called")
#define RAWGAN_EMU_STR2(x) #x
#define RAWGAN_EMU_STR(x) RAWGAN_EMU_STR2(x)
#undef assert
#define assert(e) ((e) ? (void)0 : rawgan_emu_trap("assertion failed: " #e " at line " RAWGAN_EMU_STR(__LINE__)))

// ----------------------------------------------------------------------------------------------
// Entry point called from Python (ctypes)
// ----------------------------------------------------------------------------------------------
RAWGAN_EMU_EXPORT unsigned long long rawgan_emu_static_smem_bytes() { return rawgan_emu::static_smem_bytes(); }

// Run `tramp(args)` over grid x block. dyn_smem: a buffer of dyn_bytes (>= 16-aligned) used as
// the dynamic shared memory. schedule: 0 forward, 1 reverse (blocks and threads). Returns 0 on
// success, else 1 with a message in err.
RAWGAN_EMU_EXPORT int rawgan_emu_launch(void (*tramp)(void**), void** args, const unsigned int* grid,
                                        const unsigned int* block, unsigned char* dyn_smem,
                                        unsigned long long dyn_bytes, int schedule, char* err,
                                        unsigned long long errlen) {
    using namespace rawgan_emu;
    g.tramp = tramp;
    g.args = args;
    g.failed = false;
    g.error[0] = 0;
    g_dyn_smem = dyn_smem;
    gridDim = dim3(grid[0], grid[1], grid[2]);
    blockDim = dim3(block[0], block[1], block[2]);
    g.nthreads = int(block[0] * block[1] * block[2]);
    int t = 0;
    for (unsigned int z = 0; z < block[2]; z++)
        for (unsigned int y = 0; y < block[1]; y++)
            for (unsigned int x = 0; x < block[0]; x++) g.fibers[t++].tid = {x, y, z};
    char* smem = __start_rawgan_shared;
    size_t smem_bytes = static_smem_bytes();
    const unsigned long long nblocks = (unsigned long long)grid[0] * grid[1] * grid[2];
    for (unsigned long long i = 0; i < nblocks; i++) {
        unsigned long long b = schedule == 1 ? nblocks - 1 - i : i;
        blockIdx.x = unsigned(b % grid[0]);
        blockIdx.y = unsigned((b / grid[0]) % grid[1]);
        blockIdx.z = unsigned(b / ((unsigned long long)grid[0] * grid[1]));
        if (smem_bytes) memset(smem, 0xFF, smem_bytes);
        if (dyn_bytes) memset(dyn_smem, 0xFF, dyn_bytes);
        if (!run_block(schedule == 1)) {
            // Abandoned fibers' stacks go back to the pool.
            for (int t = 0; t < g.nthreads; t++)
                if (g.fibers[t].stack) { g_stack_pool[g_stack_free++] = g.fibers[t].stack; g.fibers[t].stack = nullptr; }
            snprintf(err, errlen, "%s", g.error);
            return 1;
        }
    }
    return 0;
}
