"""C kernels vs the numpy reference, byte for byte; exact restore; update determinism and modes."""

import hashlib

import numpy as np
import pytest

from edgees.qes import kernels
from edgees.qes import reference as kernels_ref
from edgees.qes import noise
from edgees.gguf import quants
from edgees.gguf.working_copy import WorkingCopy
from edgees.qes.trainable import slots_for

SIGMAS = [0.005, 0.01, 0.05, 0.5, 2.0]
TYPES = sorted(q.name for q in quants.QTYPES.values())


def make_slots(type_name: str, sizes=(70000, 4096), seed=0) -> list[kernels.Slot]:
    """Random packed tensors of one type; some blocks pinned to all-lo and all-hi codes."""
    qt = quants.BY_NAME[type_name]
    rng = np.random.default_rng(seed)
    slots = []
    for k, n in enumerate(sizes):
        n = (n + qt.block_elems - 1) // qt.block_elems * qt.block_elems
        raw = rng.integers(0, 256, n // qt.block_elems * qt.block_bytes, dtype=np.uint8)
        codes = quants.unpack_codes(qt.type_id, raw)
        codes[: qt.block_elems] = qt.lo  # a block sitting at the bottom of the range
        codes[qt.block_elems: 2 * qt.block_elems] = qt.hi  # and one at the top
        codes[2 * qt.block_elems: 3 * qt.block_elems: 2] = qt.lo
        codes[2 * qt.block_elems + 1: 3 * qt.block_elems: 2] = qt.hi
        quants.pack_codes(qt.type_id, raw, codes)
        slots.append(kernels.Slot(f"blk.{k}.ffn_up.weight", qt.type_id, n, raw))
    return slots


def clone(slots):
    return [kernels.Slot(s.name, s.type_id, s.n_elements, s.view.copy()) for s in slots]


def digest(slots) -> str:
    h = hashlib.sha256()
    for s in slots:
        h.update(s.view.tobytes())
    return h.hexdigest()


@pytest.mark.parametrize("type_name", TYPES)
@pytest.mark.parametrize("sigma", SIGMAS)
def test_perturb_restore_native_matches_reference(type_name, sigma):
    for seed in (1, -1, 987654321):
        a = make_slots(type_name, seed=abs(seed) % 7)
        b = clone(a)
        before = digest(a)
        rec_ref = kernels_ref.perturb(a, seed, sigma)
        rec_c = kernels.perturb(b, seed, sigma, threads=2)
        assert digest(a) == digest(b), "perturbed bytes differ between C and numpy"
        assert np.array_equal(rec_ref.counts, rec_c.counts)
        assert np.array_equal(rec_ref.pos, rec_c.pos) and np.array_equal(rec_ref.val, rec_c.val)
        if sigma >= 0.01:
            assert digest(a) != before
        kernels_ref.restore(a, rec_ref)
        kernels.restore(b, rec_c, threads=1)
        assert digest(a) == before
        assert digest(b) == before


@pytest.mark.parametrize("type_name", TYPES)
def test_gated_positions_are_at_the_range_ends(type_name):
    """The record holds exactly the noise entries that kept the code in range; the rest were gated."""
    slots = make_slots(type_name)
    qt = slots[0].qt
    rec = kernels.perturb(slots, 5, 0.5)
    kernels.restore(slots, rec)
    codes = quants.unpack_codes(qt.type_id, slots[0].view)
    pos, val = noise.chunk_noise(5, slots[0].key, 0, noise.CHUNK, kernels_ref.type_tables(0.5, qt.type_id))
    applied_pos, applied_val = rec.split()[0]
    kept = np.isin(pos, applied_pos.astype(np.int64))
    assert np.array_equal(val[kept], applied_val)
    # gated entries exist (the pinned blocks guarantee them) and are few next to the nonzeros
    assert 0 < np.count_nonzero(~kept) < kept.size
    after = codes[pos[~kept]].astype(np.int16) + val[~kept]
    assert np.all((after < qt.lo) | (after > qt.hi))
    after = codes[pos[kept]].astype(np.int16) + val[kept]
    assert np.all((after >= qt.lo) & (after <= qt.hi))


def test_restore_bytes_identical_at_any_thread_count():
    slots = make_slots("Q4_K", sizes=(300_000, 65536, 512))
    before = digest(slots)
    ref = clone(slots)
    kernels.perturb(ref, 42, 0.05, threads=1)
    for threads in (1, 2, 3, 7):
        work = clone(slots)
        rec = kernels.perturb(work, 42, 0.05, threads=threads)
        assert digest(work) == digest(ref)
        kernels.restore(work, rec, threads=threads)
        assert digest(work) == before


def steps_for(n_steps, pairs=4, sigma=0.05, alpha=0.6, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for t in range(n_steps):
        seeds = tuple(int(x) for x in rng.integers(1, 2**62, pairs))
        coefs = tuple(float(x) for x in np.clip(rng.standard_normal(pairs), -3, 3))
        out.append(kernels.StepSpec(seeds, coefs, alpha, sigma))
    return out


@pytest.mark.parametrize("type_name", ["Q4_0", "Q4_1", "Q5_K", "Q6_K", "Q8_0", "Q2_K", "Q3_K", "IQ4_XS"])
def test_update_native_matches_reference_replay(type_name):
    steps = steps_for(4)
    a = make_slots(type_name, sizes=(66000, 512))
    b = clone(a)
    hist_a, hist_b = [], []
    for spec in steps:
        rec_a = kernels_ref.update(a, hist_a, spec, gamma=0.9)
        rec_b, stats = kernels.update(b, hist_b, spec, gamma=0.9, threads=2)
        assert digest(a) == digest(b)
        assert np.array_equal(rec_a.counts, rec_b.counts) and np.array_equal(rec_a.pos, rec_b.pos)
        assert np.array_equal(rec_a.val, rec_b.val)
        assert stats["changed"] == rec_b.pos.size
        hist_a = (hist_a + [(spec, rec_a)])[-2:]  # window K = 2
        hist_b = (hist_b + [(spec, rec_b)])[-2:]
    assert digest(a) != digest(make_slots(type_name, sizes=(66000, 512)))


def run(slots, steps, mode, window=50, threads=2):
    hist, residual = [], None
    if mode == "residual":
        residual = [np.zeros(s.n_elements, np.int16) for s in slots]
    for spec in steps:
        rec, _ = kernels.update(slots, hist if mode == "replay" else [], spec, gamma=0.9,
                                residual=residual, threads=threads)
        if mode == "replay":
            hist = (hist + [(spec, rec)])[-window:] if window else []
    return digest(slots), residual


def test_update_identical_on_1_and_2_threads_and_across_runs():
    steps = steps_for(6)
    d1, _ = run(make_slots("Q4_1"), steps, "replay", threads=1)
    d2, _ = run(make_slots("Q4_1"), steps, "replay", threads=2)
    d3, _ = run(make_slots("Q4_1"), steps, "replay", threads=2)
    assert d1 == d2 == d3


def test_replay_reproduces_residual_when_run_is_shorter_than_window():
    steps = steps_for(7)
    d_replay, _ = run(make_slots("Q4_1"), steps, "replay", window=50)
    d_resid, resid = run(make_slots("Q4_1"), steps, "residual")
    d_off, _ = run(make_slots("Q4_1"), steps, "off")
    assert d_replay == d_resid
    assert d_off != d_resid  # error feedback does change the result here
    assert any(np.any(r) for r in resid)
    # and a window shorter than the run gives a different trajectory
    d_short, _ = run(make_slots("Q4_1"), steps, "replay", window=2)
    assert d_short != d_resid


def test_residual_mode_native_matches_reference():
    steps = steps_for(3)
    a, b = make_slots("Q5_0"), make_slots("Q5_0")
    ra = [np.zeros(s.n_elements, np.int16) for s in a]
    rb = [np.zeros(s.n_elements, np.int16) for s in b]
    for spec in steps:
        kernels_ref.update(a, [], spec, residual=ra)
        kernels.update(b, [], spec, residual=rb)
    assert digest(a) == digest(b)
    assert all(np.array_equal(x, y) for x, y in zip(ra, rb))


def test_corrupted_history_is_detected():
    steps = steps_for(3)
    slots = make_slots("Q4_1")
    rec0, _ = kernels.update(slots, [], steps[0])
    # deltas that push codes past the top of the range cannot have been applied to these weights
    bad = kernels.ChunkRecord(rec0.counts, rec0.pos, np.full_like(rec0.val, 16))
    if rec0.pos.size == 0:
        pytest.skip("no code moved at step 0")
    with pytest.raises(RuntimeError, match="replay diverged"):
        kernels.update(slots, [(steps[0], bad)], steps[1])


def moved_per_step(window: int, n_steps: int = 10) -> list[int]:
    slots = make_slots("Q4_1", sizes=(262144,))
    hist, moved = [], []
    for spec in steps_for(n_steps, pairs=8, sigma=0.01, alpha=0.02):
        rec, stats = kernels.update(slots, hist, spec)
        hist = (hist + [(spec, rec)])[-window:]
        moved.append(stats["changed"])
    return moved


def test_short_replay_window_does_not_feed_back_on_itself():
    """A window shorter than the run starts e at 0 mid-history; the moves recorded before it must
    not be booked as error (that pushed codes back and grew the moves step after step)."""
    short, full = moved_per_step(1), moved_per_step(50)
    assert sum(short) <= 1.3 * sum(full)
    assert max(short[5:]) <= 1.5 * max(full[5:])


@pytest.mark.parametrize("type_name", ["Q4_1", "Q6_K", "Q8_0", "Q3_K"])
def test_fused_swap_equals_restore_then_perturb(type_name):
    a = make_slots(type_name)
    b = clone(a)
    before = digest(a)
    g_a = kernels.perturb(a, 3, 0.05)
    g_b = kernels.perturb(b, 3, 0.05)
    kernels.restore(a, g_a)
    g_a2 = kernels.perturb(a, -3, 0.05)
    g_b2 = kernels.swap(b, g_b, -3, 0.05, threads=2)
    assert digest(a) == digest(b)
    assert np.array_equal(g_a2.counts, g_b2.counts) and np.array_equal(g_a2.pos, g_b2.pos)
    assert np.array_equal(g_a2.val, g_b2.val)
    kernels.restore(b, g_b2)
    assert digest(b) == before


# ---------------------------------------------------------------- lazy replay (native/update.c)
# The C replay brings an element's e up to date only when a step touches it (noise or a recorded
# delta), jumping through tables of the pure decay e <- round(gamma * e); a step whose noise touches
# much of a chunk runs densely instead. The reference replays every step densely. These pin the two
# byte for byte over long windows that mix both kinds of step.

def mixed_steps(n_steps, pairs, sigma, alpha, seed=7, loud_every=6):
    """Steps of one law, every loud_every-th one at sigma 0.5 (its noise touches most elements)."""
    quiet = steps_for(n_steps, pairs=pairs, sigma=sigma, alpha=alpha, seed=seed)
    loud = steps_for(n_steps, pairs=pairs, sigma=0.5, alpha=alpha, seed=seed + 1)
    return [loud[t] if t % loud_every == loud_every - 1 else quiet[t] for t in range(n_steps)]


def replay_against_reference(type_name, gamma, window, steps, check, threads=2):
    """C replay with window `window` over `steps`; at the steps in `check`, the reference update on
    the same weights and history must give the same bytes and the same record."""
    slots = make_slots(type_name, sizes=(66000, 512), seed=len(steps))
    hist = []
    for t, spec in enumerate(steps):
        if t in check:
            ref = clone(slots)
            rec_ref = kernels_ref.update(ref, hist, spec, gamma=gamma)
        rec, _ = kernels.update(slots, hist, spec, gamma=gamma, threads=threads)
        if t in check:
            assert digest(ref) == digest(slots), f"step {t}: codes differ from the reference"
            for f in ("counts", "pos", "val"):
                assert np.array_equal(getattr(rec_ref, f), getattr(rec, f)), f"step {t}: record {f} differs"
        hist = (hist + [(spec, rec)])[-window:]
    return digest(slots)


@pytest.mark.parametrize("type_name, gamma, sigma, pairs, alpha", [
    ("Q4_1", 0.9, 0.01, 8, 0.2), ("Q6_K", 0.99, 0.01, 8, 0.05), ("Q8_0", 1.3, 0.001, 8, 0.02),
    ("Q3_K", 0.5, 0.05, 4, 0.2), ("Q4_1", 1.0, 0.05, 4, 0.05), ("Q6_K", 0.0, 0.02, 6, 0.2),
    ("Q3_K", 0.99, 0.02, 6, 0.01),
])
def test_lazy_replay_matches_reference_over_long_windows(type_name, gamma, sigma, pairs, alpha):
    steps = mixed_steps(36, pairs, sigma, alpha)
    # a window longer than the run (every step replays from the first) ...
    d_long = replay_against_reference(type_name, gamma, 50, steps, check={11, 23, 35})
    # ... and one shorter than it (e restarts at 0 seven steps back)
    replay_against_reference(type_name, gamma, 7, steps, check={9, 20, 27, 35})
    assert replay_against_reference(type_name, gamma, 50, steps, check=set(), threads=1) == d_long


@pytest.mark.parametrize("gamma", [0.5, 0.99, 1.3])
def test_residual_mode_matches_reference_with_e(gamma):
    steps = steps_for(12, seed=3, pairs=8, sigma=0.01, alpha=0.2)
    a, b = make_slots("Q6_K", sizes=(66000, 512)), make_slots("Q6_K", sizes=(66000, 512))
    ra = [np.zeros(s.n_elements, np.int16) for s in a]
    rb = [np.zeros(s.n_elements, np.int16) for s in b]
    for spec in steps:
        rec_a = kernels_ref.update(a, [], spec, gamma=gamma, residual=ra)
        rec_b, _ = kernels.update(b, [], spec, gamma=gamma, residual=rb)
        assert np.array_equal(rec_a.pos, rec_b.pos) and np.array_equal(rec_a.val, rec_b.val)
    assert digest(a) == digest(b)
    assert all(np.array_equal(x, y) for x, y in zip(ra, rb))
    assert sum(np.count_nonzero(r) for r in ra) > 1000


@pytest.mark.parametrize("gamma", [0.9, 0.99, 1.0])
def test_lazy_replay_across_quiet_steps(gamma):
    """Loud steps leave e nonzero almost everywhere, then ~40 steps with next to no noise: an element
    goes untouched for dozens of steps and is caught up by long decay jumps (and the code steps the
    decay drives at the range ends), which must match the dense reference."""
    loud = steps_for(6, seed=11, pairs=8, sigma=0.5, alpha=0.3)
    quiet = steps_for(40, seed=12, pairs=2, sigma=0.0005, alpha=0.3)
    steps = loud + quiet + steps_for(2, seed=13, pairs=8, sigma=0.05, alpha=0.3)
    tab = kernels_ref.type_tables(0.0005, quants.BY_NAME["Q4_1"].type_id)
    quiet_entries = sum(noise.chunk_noise(s, 1, 0, noise.CHUNK, tab)[0].size for spec in quiet for s in spec.seeds)
    assert quiet_entries < 0.01 * noise.CHUNK * len(quiet)  # the quiet steps touch well under 1% each
    resid_slots = make_slots("Q4_1", sizes=(66000, 512), seed=len(steps))
    resid = [np.zeros(s.n_elements, np.int16) for s in resid_slots]
    for spec in loud:
        kernels.update(resid_slots, [], spec, gamma=gamma, residual=resid)
    assert np.count_nonzero(resid[0]) > 0.5 * resid[0].size  # e is nonzero almost everywhere
    replay_against_reference("Q4_1", gamma, 50, steps, check={20, 45, 47})


def test_unordered_recorded_deltas_are_detected():
    """A record whose positions are not increasing cannot come from an update; the replay says so."""
    steps = steps_for(2, pairs=8, sigma=0.01, alpha=0.2)
    slots = make_slots("Q4_1", sizes=(66000, 512))
    rec0, _ = kernels.update(slots, [], steps[0])
    n0 = int(rec0.counts[0])
    assert n0 >= 2
    pos = rec0.pos.copy()
    pos[[0, n0 - 1]] = pos[[n0 - 1, 0]]
    val = rec0.val.copy()
    val[[0, n0 - 1]] = val[[n0 - 1, 0]]
    with pytest.raises(RuntimeError, match="replay diverged"):
        kernels.update(slots, [(steps[0], kernels.ChunkRecord(rec0.counts, pos, val))], steps[1])


# ---------------------------------------------------------------- packed window records (native/pack.h)

def test_packed_record_round_trips_every_value_and_position():
    rng = np.random.default_rng(3)
    parts = []
    for j in range(40):
        n = [0, 1, 5, 300, 2000][j % 5]
        pos = np.sort(rng.choice(65536, n, replace=False)).astype(np.uint16)
        if n >= 2:
            pos[0], pos[-1] = 0, 65535  # both ends of a chunk
        val = rng.choice(np.array([1, -1, 1, -1, 2, -3, 127, -128], np.int8), n)
        parts.append((pos, val))
    rec = kernels.ChunkRecord.join(parts)
    packed = kernels.pack(rec)
    back = kernels.unpack(packed)
    assert np.array_equal(back.counts, rec.counts) and np.array_equal(back.pos, rec.pos)
    assert np.array_equal(back.val, rec.val)
    with pytest.raises(ValueError, match="do not ascend"):
        kernels.pack(kernels.ChunkRecord.join([(np.array([5, 5], np.uint16), np.array([1, 1], np.int8))]))


def test_update_reads_a_packed_window_as_the_plain_one():
    """Same bytes and records with the window packed as WeightState keeps it; ~2 bytes per move."""
    a = make_slots("Q4_1", sizes=(262144, 4096))
    b = clone(a)
    hist_a, hist_b, raw, packed = [], [], 0, 0
    for spec in steps_for(12, pairs=8, sigma=0.01, alpha=0.02):
        rec_a, _ = kernels.update(a, hist_a, spec, threads=2)
        rec_b, _ = kernels.update(b, hist_b, spec, threads=1)
        assert digest(a) == digest(b) and np.array_equal(rec_a.pos, rec_b.pos)
        assert np.array_equal(rec_a.val, rec_b.val)
        p = kernels.pack(rec_b)
        assert np.array_equal(kernels.unpack(p).pos, rec_b.pos)
        raw, packed = raw + rec_b.pos.nbytes + rec_b.val.nbytes, packed + p.data.nbytes
        hist_a, hist_b = (hist_a + [(spec, rec_a)])[-5:], (hist_b + [(spec, p)])[-5:]
    assert raw > 0 and packed < 0.75 * raw


def test_a_damaged_packed_record_is_refused():
    steps = steps_for(2, pairs=8, sigma=0.05, alpha=0.05)
    slots = make_slots("Q4_1")
    rec0, _ = kernels.update(slots, [], steps[0])
    if rec0.pos.size == 0:
        pytest.skip("no code moved at step 0")
    p = kernels.pack(rec0)
    cut = kernels.PackedRecord(p.counts, p.offsets, p.data.copy())
    cut.data[-1] |= 0x80  # the last varint now runs past the end of its job's stream
    with pytest.raises(RuntimeError, match="replay diverged"):
        kernels.update(clone(slots), [(steps[0], cut)], steps[1])
    with pytest.raises(ValueError, match="span its data"):
        kernels.update(clone(slots), [(steps[0], kernels.PackedRecord(p.counts, p.offsets, p.data[:-1]))],
                       steps[1])


def test_finer_types_take_the_4bit_step_in_weight_space():
    """One sigma is the same relative step on every type: a Q8_0 tensor (16 of its steps to one
    4-bit step) gets the noise of a 4-bit tensor with the same name times 16, and its update moves
    16 times as many codes, to within rounding (quants.noise_law)."""
    n = 2 * noise.CHUNK
    q4, q8 = quants.BY_NAME["Q4_0"], quants.BY_NAME["Q8_0"]
    slots = {}
    for qt, mid in ((q4, 8), (q8, 0)):  # mid-range codes: nothing is gated
        raw = np.zeros(n // qt.block_elems * qt.block_bytes, np.uint8)
        quants.pack_codes(qt.type_id, raw, np.full(n, mid, np.int8))
        slots[qt.name] = [kernels.Slot("blk.0.ffn_up.weight", qt.type_id, n, raw)]
    r4 = kernels.perturb(slots["Q4_0"], 9, 0.05)
    r8 = kernels.perturb(slots["Q8_0"], 9, 0.05)
    assert r4.pos.size > 1000
    assert np.array_equal(r4.pos, r8.pos) and np.array_equal(r8.val.astype(np.int16), 16 * r4.val.astype(np.int16))
    kernels.restore(slots["Q4_0"], r4)
    kernels.restore(slots["Q8_0"], r8)
    spec = steps_for(1, pairs=4, sigma=0.05, alpha=0.1)[0]
    d4, d8 = (np.zeros(n, np.int64) for _ in range(2))
    for d, name in ((d4, "Q4_0"), (d8, "Q8_0")):
        rec, _ = kernels.update(slots[name], [], spec)
        base = np.arange(len(rec.counts)).repeat(rec.counts.astype(np.int64)) * noise.CHUNK
        d[base + rec.pos.astype(np.int64)] = rec.val
    moved4 = d4 != 0
    assert 100 < np.count_nonzero(moved4) and np.abs(d4).max() < 7
    assert np.all(d8[moved4] != 0) and np.all(np.abs(d8 - 16 * d4) <= 8)


def test_restore_and_swap_refuse_a_packed_record(tiny_models):
    """A packed record has no positions and values to undo with: a ValueError, never a crash."""
    with WorkingCopy(tiny_models["Q4_1"]) as wc:
        slots = slots_for(wc)
        rec = kernels.perturb(slots, 3, 0.5)
        with pytest.raises(ValueError, match="not a packed one"):
            kernels.restore(slots, kernels.pack(rec))
        with pytest.raises(ValueError, match="not a packed one"):
            kernels.swap(slots, kernels.pack(rec), 5, 0.5)
        kernels.restore(slots, rec)
