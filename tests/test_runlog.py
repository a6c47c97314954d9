"""The step log: a torn last record (cut at any byte) recovers the previous step; a flipped byte in
any complete record, the last included, is reported with its line; atomic header writes."""

from __future__ import annotations

import json
import zlib

import pytest

from edgees.errors import RunError
from edgees.run.log import STEPS_MAGIC, RunDir, StepRecord, encode_record, log_sha256, read_steps


def record(step: int) -> StepRecord:
    return StepRecord(step=step, seeds=[12345 + step, 777], rewards_plus=[0.25, 0.5 + step],
                      rewards_minus=[0.125, -1e-3], coefs=[1.0, -1.0], sigma=0.3, alpha=1.0,
                      weights_sha256=f"{step:064x}", changed=3 * step)


def log_bytes(n: int) -> tuple[bytes, list[bytes]]:
    lines = [encode_record(record(i)) for i in range(n)]
    return STEPS_MAGIC + b"".join(lines), lines


def test_round_trip(tmp_path):
    data, _ = log_bytes(3)
    (tmp_path / "steps.log").write_bytes(data)
    records, good, torn = read_steps(tmp_path / "steps.log")
    assert records == [record(i) for i in range(3)] and good == len(data) and not torn


def test_truncated_last_record_at_every_byte_recovers_previous_step(tmp_path):
    data, lines = log_bytes(3)
    prefix = len(data) - len(lines[-1])
    path = tmp_path / "steps.log"
    for cut in range(prefix, len(data)):  # 0 .. len-1 bytes of the last record survive
        path.write_bytes(data[:cut])
        records, good, torn = read_steps(path)
        assert records == [record(0), record(1)], cut
        assert good == prefix
        assert torn == (cut > prefix), cut  # nothing of it written: a clean log of 2 steps


def test_torn_magic_and_empty_log(tmp_path):
    path = tmp_path / "steps.log"
    for cut in range(len(STEPS_MAGIC)):
        path.write_bytes(STEPS_MAGIC[:cut])
        assert read_steps(path) == ([], 0, True)


def test_writer_drops_torn_tail_then_appends(tmp_path):
    run = RunDir(tmp_path / "run", write=True)
    run.write_header({"config": {}})
    for i in range(2):
        run.append_step(record(i))
    path = run.path / "steps.log"
    data = path.read_bytes()
    path.write_bytes(data + encode_record(record(2))[:17])
    assert run.read_steps() == [record(0), record(1)]
    assert path.read_bytes() == data  # truncated back to the good prefix
    run.append_step(record(2))
    assert read_steps(path)[0] == [record(i) for i in range(3)]
    run.close()


def test_header_written_after_step_log(tmp_path, monkeypatch):
    """A kill between the two writes of write_header must not leave a run.json without its log
    (a resumed run would then append to a missing file)."""
    from edgees.run import log as runlog
    order = []
    real = runlog.atomic_write
    monkeypatch.setattr(runlog, "atomic_write", lambda path, data: (order.append(path.name), real(path, data)))
    run = RunDir(tmp_path / "run", write=True)
    run.write_header({"config": {}})
    assert order == ["steps.log", "run.json"]
    assert (run.path / "steps.log").read_bytes() == STEPS_MAGIC
    run.close()


def test_a_run_of_another_format_version_is_refused_with_the_fix(tmp_path):
    """Steps logged under another noise law would replay to other weights: refuse, and say what to do."""
    run = RunDir(tmp_path / "run", write=True)
    run.write_header({"config": {}})
    header = json.loads(run.header_path.read_text())
    run.header_path.write_text(json.dumps({**header, "version": 1}))
    before = run.header_path.read_bytes()
    with pytest.raises(RunError, match=r"version 1; this edgees reads versions 2, 3 .*start a new run"):
        run.read_header()
    assert run.header_path.read_bytes() == before
    run.close()


@pytest.mark.parametrize("n", [1, 3])
def test_flipped_byte_anywhere_in_a_complete_record_is_reported(tmp_path, n):
    data, lines = log_bytes(n)
    path = tmp_path / "steps.log"
    start = len(STEPS_MAGIC)
    for li, line in enumerate(lines):
        for k in range(len(line)):
            at = start + k
            for flip in (0x01, 0x80):  # a low bit (stays ASCII) and the high bit
                bad = bytearray(data)
                bad[at] ^= flip
                path.write_bytes(bytes(bad))
                with pytest.raises(RunError, match=rf"line {li + 2}\b") as exc:
                    read_steps(path)
                assert "\n" not in str(exc.value)
        start += len(line)


def test_flipped_byte_in_magic_is_reported(tmp_path):
    data, _ = log_bytes(2)
    path = tmp_path / "steps.log"
    for at in range(len(STEPS_MAGIC)):
        bad = bytearray(data)
        bad[at] ^= 0x01
        path.write_bytes(bytes(bad))
        with pytest.raises(RunError):
            read_steps(path)


def test_out_of_order_step_is_reported(tmp_path):
    path = tmp_path / "steps.log"
    path.write_bytes(STEPS_MAGIC + encode_record(record(0)) + encode_record(record(2)))
    with pytest.raises(RunError, match="line 3 holds step 2, expected 1"):
        read_steps(path)


def test_second_writer_is_refused(tmp_path):
    a = RunDir(tmp_path / "run", write=True)
    with pytest.raises(RunError, match="in use"):
        RunDir(tmp_path / "run", write=True)
    a.close()
    RunDir(tmp_path / "run", write=True).close()


def test_records_parse_lazily_but_a_bad_record_is_still_reported(tmp_path):
    """read_steps checks every line's checksum and step number at once and parses a record's JSON
    when it is first used: a line with a valid checksum that is not a record (no encoder of ours
    writes one) is a RunError naming its line as soon as anything reads it (verify reads all)."""
    data, lines = log_bytes(3)
    body = b'{"step":1,"seeds":[1'
    bad = body + b"\t" + f"{zlib.crc32(body):08x}".encode() + b"\n"
    path = tmp_path / "steps.log"
    path.write_bytes(STEPS_MAGIC + lines[0] + bad + lines[2])
    records, _, _ = read_steps(path)
    assert len(records) == 3 and records[0] == record(0) and records[2] == record(2)
    with pytest.raises(RunError, match="line 3 is not a step record"):
        list(records)


def test_prefix_hash_of_a_read_log_is_log_sha256(tmp_path):
    data, _ = log_bytes(5)
    path = tmp_path / "steps.log"
    path.write_bytes(data)
    records, _, _ = read_steps(path)
    for n in range(6):
        assert records.prefix_sha256(n) == log_sha256(path, n)


def test_a_checkpoints_claim_on_the_prefix_spares_its_checks_and_nothing_else(tmp_path):
    """read_steps(trusted=(t, sha256)): when the first t lines hash to a checkpoint's claim they are
    not checked line by line again; the result is the same. A claim that does not match (a flipped
    byte in the prefix, another log, more lines than there are) changes nothing: every line is
    checked and a damaged one is reported by its line number, as without a claim."""
    data, lines = log_bytes(6)
    path = tmp_path / "steps.log"
    path.write_bytes(data + lines[0][:7])  # and a torn tail
    plain = read_steps(path)
    for t in range(7):
        claim = (t, log_sha256(path, t))
        records, good, torn = read_steps(path, trusted=claim)
        assert (records, good, torn) == plain and records._spans == plain[0]._spans, t
        assert [r.step for r in records] == list(range(6))
    assert read_steps(path, trusted=(9, "0" * 64)) == plain
    bad = bytearray(data)
    bad[len(STEPS_MAGIC) + len(lines[0]) + 5] ^= 0x01  # line 3, inside the claimed prefix of 4
    path.write_bytes(data)
    claim4 = (4, log_sha256(path, 4))
    path.write_bytes(bytes(bad))
    with pytest.raises(RunError, match=r"line 3\b"):
        read_steps(path, trusted=claim4)
    bad_after = bytearray(data)
    bad_after[len(data) - 20] ^= 0x01  # line 7 (the last record), after a good prefix of 4
    path.write_bytes(bytes(bad_after))
    with pytest.raises(RunError, match=r"line 7\b"):
        read_steps(path, trusted=claim4)
