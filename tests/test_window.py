"""The replay window kept in files gives the same weights as kept in RAM, holds at most K steps,
and leaves no files behind."""

from __future__ import annotations

import numpy as np

from edgees.qes import algorithm as qes
from edgees.gguf.working_copy import WorkingCopy
from edgees.qes.records import StepSpec
from edgees.qes.state import WeightState
from edgees.qes.window import SUFFIX, Window


def _steps(n):
    rng = np.random.default_rng(3)
    for t in range(n):
        seeds = qes.pair_seeds(7, t, 3)
        coefs = tuple(float(x) for x in np.clip(rng.standard_normal(3), -3, 3))
        yield StepSpec(seeds, coefs, 0.3, 0.05)  # large steps: thousands of codes move each time


def test_window_in_files_matches_window_in_ram(tiny_models, tmp_path, monkeypatch):
    monkeypatch.setattr("edgees.qes.state.GROUP_BYTES", 64 << 10)  # several groups, each its own part of a file
    path = tiny_models["Q4_K"]
    win = tmp_path / "window"
    with WorkingCopy(path) as wc_ram, WorkingCopy(path) as wc_disk:
        ram = WeightState(wc_ram, window=3)
        disk = WeightState(wc_disk, window=3, window_dir=win)
        assert len(disk.groups) >= 3
        for t, spec in enumerate(_steps(6)):
            s_ram, s_disk = ram.apply(spec), disk.apply(spec)
            assert s_ram == s_disk
            assert s_ram["changed"] > 0
            assert ram.sha256() == disk.sha256(), f"step {t}"
            assert len(list(win.glob("*" + SUFFIX))) == min(t + 1, 3)
        assert disk.history_bytes() == sum(p.size for _, held in disk.history._steps for p in held.parts)
        assert disk.history_ram_bytes() == 0 and ram.history_ram_bytes() == ram.history_bytes() > 0
        disk.close()
        assert not win.exists()


def test_stale_window_files_are_deleted_on_open(tmp_path):
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / ("00000007" + SUFFIX)).write_bytes(b"torn")
    (tmp_path / "w" / "keep.txt").write_text("not ours")
    Window(5, tmp_path / "w")
    assert sorted(p.name for p in (tmp_path / "w").iterdir()) == ["keep.txt"]


def test_window_round_trips_records(tiny_models, tmp_path):
    """What comes back from a file is the record that went in, array for array."""
    with WorkingCopy(tiny_models["Q5_0"]) as wc:
        state = WeightState(wc, window=2)
        spec = next(_steps(1))
        state.apply(spec)
        (spec0, held), = state.history._steps
        recs = held.records
        w = Window(2, tmp_path / "w")
        w.append(spec0, recs)
        got = w.group(0)[0][1]
        for name in ("counts", "offsets", "data"):
            a, b = getattr(got, name), getattr(recs[0], name)
            assert a.dtype == b.dtype and a.tobytes() == b.tobytes()


def test_without_error_feedback_the_window_changes_nothing(tiny_models):
    """--ef off keeps no window, so runs of the ablation compare with QES at any K (the `--ef off`
    results measured at K = 50 stand at K = 25); with replay, K changes the weights once steps
    fall out of the shorter window."""
    path = tiny_models["Q4_1"]
    hashes = {}
    for ef in ("off", "replay"):
        for k in (1, 4):
            with WorkingCopy(path) as wc:
                state = WeightState(wc, ef=ef, window=k)
                hashes[ef, k] = []
                for spec in _steps(6):
                    state.apply(spec)
                    hashes[ef, k].append(state.sha256())
    assert hashes["off", 1] == hashes["off", 4]
    assert hashes["replay", 1][0] == hashes["replay", 4][0] and hashes["replay", 1] != hashes["replay", 4]
