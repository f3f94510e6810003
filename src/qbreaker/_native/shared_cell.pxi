# Included by _core_c.pyx after ops.pxi. A cell in a shared segment: its use
# in place of the breaker's own, this process's slot of it (claimed, or taken
# over from a dead process), and for the segment module the atomic loads and
# stores of header words (u64_load, u64_store) and the slots' shape.


cdef inline qb_slot *_slots_of(CircuitBreaker b) noexcept:
    # A shared cell's slots: at the 64-byte offset _use_shared_cell found
    # from the validated policy (not from the segment's own header).
    return <qb_slot *>(<char *>b._cell + 64 * ((b.cpolicy.host_flags >> FLAG_SLOTS_SHIFT) & 0xFF))


cdef uint64_t _process_token = 0
cdef uint64_t _pid_namespace = 0


cdef uint64_t _this_process() except 0:
    # A slot owner's token: pid << 32 | a random nonce, made anew in each
    # process (a forked child sees another pid). Pids alone collide between
    # PID namespaces that share /dev/shm; the namespace's inode, kept beside
    # the token, says whose pids kill() can judge.
    global _process_token, _pid_namespace
    cdef uint64_t pid = <uint64_t>getpid()
    if (_process_token >> 32) != pid:
        _process_token = pid << 32 | (int.from_bytes(os.urandom(4), "little") | 1)
        try:
            _pid_namespace = os.stat("/proc/self/ns/pid").st_ino
        except OSError:
            _pid_namespace = 0  # unknown: never take a slot over
    return _process_token


# Linux's PID_MAX_LIMIT: every pid is below it.
cdef uint64_t PID_LIMIT = 1 << 22


cdef bint _owner_is_dead(uint64_t owner) noexcept nogil:
    # A slot's owner is whatever bytes the segment holds: only a pid that can
    # name one process goes to kill(), since 0 and negative values address
    # process groups, and pid 1 never dies.
    cdef uint64_t pid = owner >> 32
    return (1 < pid < PID_LIMIT and kill(<int>pid, 0) == -1 and errno == ESRCH)


cdef int _claim_slot(CircuitBreaker b) except -1:
    # This process's slot of a shared cell: one it already holds (another
    # breaker object on the same segment: the GIL serialises the two), a
    # free one, or a dead process's of the same PID namespace (its counts
    # stay in the totals). None left: this process keeps counting in the
    # cell, with atomics.
    cdef qb_slot *slots = _slots_of(b)
    cdef uint64_t me = _this_process()
    cdef uint64_t owner
    cdef int i, found = -1
    b.cpolicy.host_flags &= ~FLAG_SLOT_WANTED
    for i in range(QB_SLOTS):
        if qb_load(&slots[i].owner) == me:
            found = i
            break
    if found < 0:
        for i in range(QB_SLOTS):
            owner = 0
            if qb_cas(&slots[i].owner, &owner, me):
                found = i
                break
    if found < 0 and _pid_namespace:
        for i in range(QB_SLOTS):
            owner = qb_load(&slots[i].owner)
            if (_owner_is_dead(owner)
                    and qb_load(&slots[i].pid_namespace) == _pid_namespace
                    and qb_cas(&slots[i].owner, &owner, me)):
                found = i
                break
    if found >= 0:
        qb_store(&slots[found].pid_namespace, _pid_namespace)
        b._hot = &slots[found].allowed
        b.cpolicy.host_flags |= FLAG_LOCAL_COUNTS
    return 0


def u64_load(buffer, Py_ssize_t offset):
    """An acquire load of the aligned 64-bit word at ``offset`` of ``buffer``."""
    return qb_load(<uint64_t *>_word_at(buffer, offset))


def u64_store(buffer, Py_ssize_t offset, uint64_t value):
    """A release store to the aligned 64-bit word at ``offset`` of ``buffer``."""
    qb_store(<uint64_t *>_word_at(buffer, offset), value)


cdef unsigned char *_word_at(object buffer, Py_ssize_t offset) except NULL:
    cdef unsigned char[::1] view = buffer
    if offset < 0 or offset + 8 > view.shape[0] or offset & 7:
        raise ValueError(f"offset {offset} is not an aligned word of the buffer")
    if (<uintptr_t>&view[offset]) & 7:
        raise ValueError("buffer is not 8-byte aligned")
    return &view[offset]


cdef int _use_shared_cell(CircuitBreaker b, object buffer, object policy) except -1:
    # The cell (and window, set up by the segment's creator) at offset 256 of
    # a segment's mapping; the mapping must outlive the breaker (qbreaker.shared
    # keeps it, and a live export keeps it from being closed under us).
    cdef unsigned char[::1] view = buffer
    cdef size_t need = (QB_CELL_BYTES(policy.window_buckets) if policy.window_kind
                        else sizeof(qb_cell))
    cdef size_t slots_at = (need + 63) & ~(<size_t>63)  # qb_slot is 64-aligned
    if <size_t>view.shape[0] < 256 + slots_at + QB_SLOTS * sizeof(qb_slot):
        raise ValueError("shared buffer too small for this policy")
    b._cell = <qb_cell *>&view[256]
    if (<uintptr_t>b._cell) & 63:
        raise ValueError("shared buffer is not aligned to 64 bytes")
    # Other processes count in the same cell: atomics, until this process
    # has a slot of its own.
    b.cpolicy.host_flags &= ~FLAG_LOCAL_COUNTS
    b.cpolicy.host_flags |= FLAG_SHARED | (slots_at // 64) << FLAG_SLOTS_SHIFT
    if QB_HAVE_GIL:
        b.cpolicy.host_flags |= FLAG_SLOT_WANTED
    return 0


# For the segment format's layout check: a shared segment's slot count and slot size.
SHARED_SLOTS = (QB_SLOTS, sizeof(qb_slot))
