/* The cell: all mutable state of one breaker, in one cache line.
 *
 * Plain uint64_t words, touched only through qb_atomic.h, so the same struct
 * works in process memory and in a shared-memory segment. All-zero bytes are
 * the valid initial state (closed, generation 0).
 */
#ifndef QB_CELL_H
#define QB_CELL_H

#include <stdint.h>

#if defined(_MSC_VER) && !defined(__clang__)
#  define QB_ALIGN64 __declspec(align(64))
#else
#  define QB_ALIGN64 __attribute__((aligned(64)))
#endif

typedef struct QB_ALIGN64 qb_cell {
    uint64_t word;
    uint64_t allowed;
    uint64_t rejected;
    uint64_t successes;
    uint64_t failures;
    uint64_t neutral;
    uint64_t transitions;
    /* Tick of the last transition, for "time in state": statistics only,
       written after the transition's CAS, never read by a decision. */
    uint64_t changed_at;
} qb_cell;

/* Checked at compile time: a cell that straddled two cache lines would double
   the coherence traffic, and shared-memory segments rely on this size. */
typedef char qb_cell_is_one_cache_line[(sizeof(qb_cell) == 64) ? 1 : -1];

/* The rate window, right after the cell when a policy has one: a header on
   its own cache line (the window's settings, which a shared-memory segment
   must carry anyway, and the count window's cursor), then the buckets.
   All-zero is again the valid initial state. See _core_py.Window. */
typedef struct QB_ALIGN64 qb_window {
    uint64_t cursor;          /* count windows: outcomes recorded so far */
    uint64_t span;            /* outcomes or ticks per bucket */
    uint64_t slow_ticks;      /* slow_call_duration; 0: no slow-call policy */
    double failure_rate_threshold;   /* 0.0: off */
    double slow_rate_threshold;      /* 0.0: off */
    uint32_t buckets;
    uint32_t minimum_calls;
    /* A cache, not state: the epoch (<< 5) and bucket index the last outcome
       used, so the next one in that epoch or the next needs no division.
       Any value a caller stored is a consistent pair; zero is one. */
    uint64_t hint;
    /* The latest epoch that counted a failed or slow outcome: a rotation
       with none of them in the window cannot cross a threshold. */
    uint64_t bad_epoch;
} qb_window;

typedef struct qb_bucket {
    uint64_t key;             /* generation << 40 | epoch */
    uint64_t calls;
    uint64_t failures;
    uint64_t slow;
} qb_bucket;

typedef char qb_window_is_one_cache_line[(sizeof(qb_window) == 64) ? 1 : -1];

#define QB_WINDOW(cell) ((qb_window *)((char *)(cell) + sizeof(qb_cell)))
#define QB_BUCKETS(cell) ((qb_bucket *)((char *)(cell) + sizeof(qb_cell) + sizeof(qb_window)))
/* Bytes of a cell with a window of `buckets` buckets. */
#define QB_CELL_BYTES(buckets) \
    (sizeof(qb_cell) + sizeof(qb_window) + (size_t)(buckets) * sizeof(qb_bucket))

/* A shared segment's per-process counters, after the cell (and window):
   QB_SLOTS slots, one cache line each. A process claims one by writing its
   pid into `owner` (CAS), then counts its closed path's allowed and
   successes, and its open breaker's rejections, there with plain stores
   under the GIL, as a private breaker counts in its object; everyone
   reads them with atomic loads and adds them up. A dead owner's slot (of
   the same PID namespace) is taken over with its counts. The slots start
   at the first 64-byte boundary after the cell and its window. */
#define QB_SLOTS 128
typedef struct QB_ALIGN64 qb_slot {
    uint64_t owner;           /* pid << 32 | a per-process nonce; 0: free */
    uint64_t allowed;
    uint64_t successes;
    uint64_t rejected;
    uint64_t pid_namespace;   /* the owner's /proc/self/ns/pid inode; 0: unknown */
    uint64_t reserved[3];
} qb_slot;

typedef char qb_slot_is_one_cache_line[(sizeof(qb_slot) == 64) ? 1 : -1];

/* Bytes to reserve for a cell inside another object: the cell, plus the
   worst-case slack to align it to its cache line where the storage starts
   16-byte aligned (objects are; the breaker puts the storage at a 16-byte
   offset), which leaves 32 contiguous spare bytes on one side of it. Where
   it does not, the cell goes unaligned at the storage's start (8-byte
   aligned, which the atomics need). */
#define QB_CELL_STORAGE (sizeof(qb_cell) + 48)

/* Where a core operation records the transitions it won, in order, as
   (old word, new word). One operation wins at most a few; QB_LOG_CAP leaves
   room for retries against concurrent transitions, and `lost` counts any
   that did not fit (never seen in testing). NULL: no record. */
#define QB_LOG_CAP 8
typedef struct qb_translog {
    int n;
    int lost;
    uint64_t from_word[QB_LOG_CAP];
    uint64_t to_word[QB_LOG_CAP];
} qb_translog;

/* Python.h comes first in every translation unit Cython writes. */
#ifdef Py_GIL_DISABLED
#  define QB_HAVE_GIL 0
#else
#  define QB_HAVE_GIL 1
#endif

/* "Read the monotonic clock yourself, if the decision needs it." No real tick
   value can equal it: ticks are stored modulo 2**44 at most. */
#define QB_NOW_AUTO UINT64_MAX

#endif /* QB_CELL_H */
