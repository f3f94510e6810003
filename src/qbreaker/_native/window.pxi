# Included by _core_c.pyx after transitions.pxi. The rate window: buckets of
# (calls, failures, slow) per epoch of time or of call count, counted with
# atomics (or plain adds for a private window under the GIL), and judged
# against the rate thresholds when a failure, a slow call or a rotation may
# have crossed one.


cdef uint64_t EPOCH_FIELD = (<uint64_t>1 << KEY_EPOCH_BITS) - 1


cdef inline void _bump(uint64_t *counter, bint plain) noexcept nogil:
    # plain: FLAG_PLAIN_WINDOW's case, where the GIL serialises every writer
    # and a locked add would be the window's whole cost.
    if plain:
        counter[0] += 1
    else:
        qb_add(counter, 1)


cdef enum:
    HINT_INDEX_BITS = 5      # buckets <= 16
    HINT_INDEX_MASK = 31


cdef inline uint64_t _window_x(qb_cell *cell, const qb_policy *pol,
                               uint64_t given_now, bint plain) noexcept nogil:
    # Where an outcome falls: its time, or (count windows) the position it
    # takes from the cursor.
    cdef qb_window *win = QB_WINDOW(cell)
    cdef uint64_t x
    if pol.window_kind == WINDOW_TIME:
        return _resolve(given_now)
    if plain:
        x = win.cursor
        win.cursor = x + 1
        return x
    return qb_fetch_add(&win.cursor, 1)


cdef inline uint64_t _window_epoch(qb_cell *cell, const qb_policy *pol, uint64_t x,
                                   uint32_t *index, bint plain) noexcept nogil:
    # The epoch of x and that epoch's bucket. Two 64-bit divisions cost more
    # than the rest of the window's path, so the epoch comes from the
    # header's hint when x falls in the hinted epoch or the next; the hint
    # is checked against x, so a stale or concurrent one only costs the
    # divisions. Unless `plain` (a private window, whose hint only this
    # code writes), its index is checked too: a segment's hint is any
    # bytes, and an index past the buckets would count outside the window.
    cdef qb_window *win = QB_WINDOW(cell)
    cdef uint64_t hint = win.hint if plain else qb_load(&win.hint)
    cdef uint64_t span = pol.window_span
    cdef uint64_t epoch = hint >> HINT_INDEX_BITS
    cdef uint64_t offset = x - epoch * span
    cdef uint32_t i = hint & HINT_INDEX_MASK
    cdef bint foreign = not plain and i >= pol.window_buckets
    if offset >= span or foreign:
        if offset < 2 * span and not foreign:
            epoch += 1
            i = 0 if i + 1 >= pol.window_buckets else i + 1
        else:
            epoch = x // span
            i = epoch % pol.window_buckets
        hint = epoch << HINT_INDEX_BITS | i
        if plain:
            win.hint = hint
        else:
            qb_store(&win.hint, hint)
    index[0] = i
    return epoch


cdef inline bint _window_quick(qb_cell *cell, const qb_policy *pol, uint64_t x,
                               uint64_t w) noexcept nogil:
    # FLAG_PLAIN_WINDOW's common success, with one add: x's bucket already
    # holds this generation's epoch. False: nothing counted yet (the hint
    # may have moved on), take the full path.
    cdef uint32_t index
    cdef uint64_t epoch = _window_epoch(cell, pol, x, &index, True)
    cdef qb_bucket *b = QB_BUCKETS(cell) + index
    if b.key != (((w >> GEN_SHIFT) & GEN_FIELD) << KEY_EPOCH_BITS
                 | (epoch & EPOCH_FIELD)):
        return False
    b.calls += 1
    return True


cdef inline bint _window_add(qb_cell *cell, uint64_t gen, uint64_t epoch,
                             uint32_t index, int outcome, bint plain,
                             uint64_t *landed) noexcept nogil:
    # Count an outcome in bucket `index` (epoch's); True if this call rotated
    # it. `landed`: the epoch the bucket holds, later than `epoch` when a
    # stale x (a descheduled caller, a clock stepped back) finds it rotated.
    cdef qb_bucket *b = QB_BUCKETS(cell) + index
    cdef uint64_t key = gen << KEY_EPOCH_BITS | (epoch & EPOCH_FIELD)
    cdef uint64_t seen = qb_load(&b.key)
    cdef uint64_t ahead
    cdef bint rotated = False
    if seen != key:
        ahead = (epoch - seen) & EPOCH_FIELD
        if (seen >> KEY_EPOCH_BITS) != gen or (
                0 < ahead < (<uint64_t>1 << (KEY_EPOCH_BITS - 1))):
            if plain:
                b.key = key
                rotated = True
            elif qb_cas(&b.key, &seen, key):
                rotated = True
            if rotated:
                qb_store(&b.calls, 0)
                qb_store(&b.failures, 0)
                qb_store(&b.slow, 0)
    _bump(&b.calls, plain)
    if (outcome & OUTCOME_BASE) == OUTCOME_FAILURE:
        _bump(&b.failures, plain)
    if outcome & OUTCOME_SLOW:
        _bump(&b.slow, plain)
    ahead = (seen - epoch) & EPOCH_FIELD
    landed[0] = epoch + ahead if (not rotated and ahead
                                  < (<uint64_t>1 << (KEY_EPOCH_BITS - 1))) else epoch
    return rotated


cdef inline void _window_sums(qb_cell *cell, const qb_policy *pol, uint64_t gen,
                              uint64_t epoch, uint64_t *sums) noexcept nogil:
    # (calls, failures, slow) of generation `gen` in the window ending at
    # `epoch`: its bucket and the buckets - 1 before it.
    cdef qb_bucket *b = QB_BUCKETS(cell)
    cdef uint32_t i
    cdef uint64_t key
    sums[0] = sums[1] = sums[2] = 0
    for i in range(pol.window_buckets):
        key = qb_load(&b[i].key)
        if (key >> KEY_EPOCH_BITS) != gen:
            continue
        if ((epoch - key) & EPOCH_FIELD) < pol.window_buckets:
            sums[0] += qb_load(&b[i].calls)
            sums[1] += qb_load(&b[i].failures)
            sums[2] += qb_load(&b[i].slow)


cdef inline uint64_t _window_now(qb_cell *cell, const qb_policy *pol,
                                 uint64_t now) noexcept nogil:
    # The epoch a reader sums to: the current time's, or the last outcome's.
    cdef qb_window *win = QB_WINDOW(cell)
    cdef uint64_t position
    if pol.window_kind == WINDOW_TIME:
        return now // pol.window_span
    position = qb_load(&win.cursor)
    return (position - 1) // pol.window_span if position else 0


cdef inline bint _rates_crossed(qb_cell *cell, const qb_policy *pol,
                                const uint64_t *sums) noexcept nogil:
    cdef qb_window *win = QB_WINDOW(cell)
    cdef double calls = <double>sums[0]
    if sums[0] == 0 or sums[0] < pol.minimum_calls:
        return False
    if win.failure_rate_threshold and <double>sums[1] >= win.failure_rate_threshold * calls:
        return True
    return win.slow_rate_threshold and <double>sums[2] >= win.slow_rate_threshold * calls


cdef inline bint _window_count(qb_cell *cell, const qb_policy *pol, uint64_t x,
                               uint64_t w, int outcome, bint plain,
                               uint64_t *epoch) noexcept nogil:
    # Count a closed generation's outcome at x (see _window_x); True if the
    # rates must be judged: on failures, slow outcomes, and rotations. A
    # rotation's judgement is skipped when no failed or slow outcome is in
    # the window, since the rates are then 0 (a skipped judgement would have
    # found nothing).
    cdef qb_window *win = QB_WINDOW(cell)
    cdef uint64_t last, landed
    cdef uint32_t index
    cdef bint bad = (outcome & OUTCOME_SLOW) or (outcome & OUTCOME_BASE) == OUTCOME_FAILURE
    epoch[0] = _window_epoch(cell, pol, x, &index, plain)
    if not _window_add(cell, (w >> GEN_SHIFT) & GEN_FIELD, epoch[0], index,
                       outcome, plain, &landed) and not bad:
        return False
    last = qb_load(&win.bad_epoch)
    if bad:
        # bad_epoch: the latest epoch whose bucket counted a failed or slow
        # outcome, raised only (a lower store would let a later rotation
        # skip wrongly).
        while last < landed and not qb_cas(&win.bad_epoch, &last, landed):
            pass
        return True
    return last > epoch[0] or epoch[0] - last < pol.window_buckets


cdef inline bint _window_settle(qb_cell *cell, const qb_policy *pol,
                                uint64_t given_now, uint64_t w, int outcome,
                                qb_translog *log, int *held) noexcept nogil:
    # Count an outcome with atomics; True if its rates tripped the breaker.
    cdef uint64_t epoch
    return (_window_count(cell, pol, _window_x(cell, pol, given_now, False), w,
                          outcome, False, &epoch)
            and _window_judge(cell, pol, given_now, w, epoch, log, held))


cdef bint _window_judge(qb_cell *cell, const qb_policy *pol, uint64_t given_now,
                        uint64_t w, uint64_t epoch, qb_translog *log,
                        int *held) noexcept nogil:
    # The rare part, out of line: sum the window to `epoch`, and trip the
    # generation of `w` if its rates crossed a threshold.
    cdef uint64_t gen = (w >> GEN_SHIFT) & GEN_FIELD
    cdef uint64_t now
    cdef uint64_t sums[3]
    _window_sums(cell, pol, gen, epoch, sums)
    if not _rates_crossed(cell, pol, sums):
        return False
    while (w & STATE_FIELD) == S_CLOSED and ((w >> GEN_SHIFT) & GEN_FIELD) == gen:
        now = _resolve(given_now)
        if _transition(cell, &w, _open_word(_next_gen(w), now), now, log, held):
            return True
    return False  # another thread moved it on: the usual path judges the rest


cdef int _attach_window(CircuitBreaker b, object policy) except -1:
    # A window makes the cell larger than the object's storage: allocate the
    # cell and its window together, aligned, and remember the offset to free.
    cdef size_t size = QB_CELL_BYTES(policy.window_buckets)
    cdef char *memory = <char *>PyMem_Malloc(size + 63)
    cdef qb_cell *cell
    cdef qb_window *win
    if memory == NULL:
        raise MemoryError()
    cell = <qb_cell *>((<uintptr_t>memory + 63) & ~(<uintptr_t>63))
    memset(cell, 0, size)
    win = QB_WINDOW(cell)
    win.span = policy.window_span
    win.slow_ticks = policy.slow_ticks
    win.failure_rate_threshold = policy.failure_rate_threshold
    win.slow_rate_threshold = policy.slow_rate_threshold
    win.buckets = policy.window_buckets
    win.minimum_calls = policy.minimum_calls
    b._cell = cell
    b.cpolicy.host_flags |= FLAG_OWNS_CELL | (
        (<uint32_t>(<char *>cell - memory)) << FLAG_OFFSET_SHIFT)
    return 0
