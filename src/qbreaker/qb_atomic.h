/* 64-bit atomics on plain, 8-byte-aligned uint64_t words.
 *
 * Why not C11 <stdatomic.h>: it needs _Atomic types, which Cython cannot
 * declare and MSVC only offers behind experimental flags. Why not
 * libcpp.atomic: it forces C++ and its objects are awkward to place in
 * shared memory. Plain words with compiler builtins work in both places,
 * the same way CPython's own pyatomic headers do it.
 */
#ifndef QB_ATOMIC_H
#define QB_ATOMIC_H

#include <stdint.h>

#if defined(_MSC_VER) && !defined(__clang__)
#  include <intrin.h>
#  if !defined(_M_X64) && !defined(_M_ARM64)
#    error "qbreaker needs lock-free 64-bit atomics (x64 or ARM64 on MSVC)"
#  endif

static __forceinline uint64_t qb_load(const uint64_t *p) {
    /* Aligned 64-bit loads are single-copy atomic on x64/ARM64; the
       barrier keeps acquire ordering for the compiler and, on ARM64,
       the hardware. */
    uint64_t v = *(const volatile uint64_t *)p;
#  if defined(_M_ARM64)
    __dmb(_ARM64_BARRIER_ISH);
#  else
    _ReadWriteBarrier();
#  endif
    return v;
}

static __forceinline int qb_cas(uint64_t *p, uint64_t *expected, uint64_t desired) {
    uint64_t seen = (uint64_t)_InterlockedCompareExchange64(
        (volatile __int64 *)p, (__int64)desired, (__int64)*expected);
    if (seen == *expected) return 1;
    *expected = seen;
    return 0;
}

static __forceinline void qb_add(uint64_t *p, uint64_t v) {
    _InterlockedExchangeAdd64((volatile __int64 *)p, (__int64)v);
}

static __forceinline void *qb_load_ptr(void **p) {
    void *v = *(void *volatile *)p;
#  if defined(_M_ARM64)
    __dmb(_ARM64_BARRIER_ISH);
#  else
    _ReadWriteBarrier();
#  endif
    return v;
}

static __forceinline int qb_cas_ptr(void **p, void *expected, void *desired) {
    return _InterlockedCompareExchangePointer(p, desired, expected) == expected;
}

static __forceinline uint64_t qb_fetch_add(uint64_t *p, uint64_t v) {
    return (uint64_t)_InterlockedExchangeAdd64((volatile __int64 *)p, (__int64)v);
}

static __forceinline void qb_store(uint64_t *p, uint64_t v) {
    _InterlockedExchange64((volatile __int64 *)p, (__int64)v);
}

#elif defined(__GNUC__) || defined(__clang__)

/* A 64-bit word that is not lock-free would fall back to libatomic, whose
   locks are private to a process: wrong for a cell in shared memory. */
#  if !defined(__GCC_ATOMIC_LLONG_LOCK_FREE) || __GCC_ATOMIC_LLONG_LOCK_FREE != 2
#    error "qbreaker needs lock-free 64-bit atomics on this target"
#  endif

static inline uint64_t qb_load(const uint64_t *p) {
    return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

/* Strong CAS: callers loop anyway, but a spurious failure on LL/SC targets
   would cost a second clock read on the slow paths. On failure *expected
   receives the current value, so the caller's loop needs no extra load. */
static inline int qb_cas(uint64_t *p, uint64_t *expected, uint64_t desired) {
    return __atomic_compare_exchange_n(p, expected, desired, 0,
                                       __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
}

/* Totals are statistics: relaxed is enough, they order nothing. */
static inline void qb_add(uint64_t *p, uint64_t v) {
    (void)__atomic_fetch_add(p, v, __ATOMIC_RELAXED);
}

static inline void *qb_load_ptr(void **p) {
    return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

/* Publishes a pointer once (a lazily made object); 1 if this call did. */
static inline int qb_cas_ptr(void **p, void *expected, void *desired) {
    return __atomic_compare_exchange_n(p, &expected, desired, 0,
                                       __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
}

/* A position counter (the count window's cursor): the value before. */
static inline uint64_t qb_fetch_add(uint64_t *p, uint64_t v) {
    return __atomic_fetch_add(p, v, __ATOMIC_RELAXED);
}

static inline void qb_store(uint64_t *p, uint64_t v) {
    __atomic_store_n(p, v, __ATOMIC_RELEASE);
}

#else
#  error "qbreaker needs GCC/Clang __atomic builtins or MSVC Interlocked intrinsics"
#endif

#endif /* QB_ATOMIC_H */
