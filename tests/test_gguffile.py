"""The GGUF validator refuses every malformed header fast, with one line; the working copy never
touches the base file and disappears on close; `edgees info` errors are one line on stderr."""

from __future__ import annotations

import gc
import hashlib
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgees.errors import GGUFError
from edgees.fileio import sha256_file
from edgees.gguf.header import StringArray
from edgees.gguf.reader import read_gguf
from edgees.gguf.working_copy import TensorMap, WorkingCopy
from edgees.qes.trainable import trainable_tensors
from edgees.gguf.tiny import make_tiny_model, tiny_model_types

ROOT = Path(__file__).resolve().parent.parent
SMOLLM2_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"


# ---- a hand-rolled GGUF writer, so each test can break exactly one field -----------------------

def _str(s) -> bytes:
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("<Q", len(b)) + b


def _kv(key, vtype: int, payload: bytes) -> bytes:
    return _str(key) + struct.pack("<I", vtype) + payload


def build(tmp_path, *, kvs=None, tensors=(("w", (32,), 0, 0),), data=None, n_tensors=None,
          n_kv=None, version=3, magic=b"GGUF", alignment=32, name="t.gguf") -> Path:
    """tensors: (name, shape, type_id, relative offset). data defaults to zeros covering them."""
    kvs = [_kv("general.architecture", 8, _str("llama"))] if kvs is None else kvs
    head = magic + struct.pack("<IQQ", version, len(tensors) if n_tensors is None else n_tensors,
                               len(kvs) if n_kv is None else n_kv)
    body = b"".join(kvs)
    for tname, shape, type_id, off in tensors:
        body += _str(tname) + struct.pack("<I", len(shape)) + struct.pack(f"<{len(shape)}Q", *shape)
        body += struct.pack("<IQ", type_id, off)
    blob = head + body
    blob += b"\0" * (-len(blob) % alignment)
    blob += bytes(4 * 32 * len(tensors)) if data is None else data
    path = tmp_path / name
    path.write_bytes(blob)
    return path


def assert_one_line_error(path, *words):
    with pytest.raises(GGUFError) as ei:
        read_gguf(path)
    msg = str(ei.value)
    assert "\n" not in msg and str(path) in msg and "byte" in msg, msg
    for w in words:
        assert w in msg, msg
    return msg


def test_handmade_file_is_valid(tmp_path):
    g = read_gguf(build(tmp_path, tensors=[("a", (32, 2), 0, 0), ("b", (64,), 2, 256)],
                        data=bytes(256 + 36)))
    assert g.architecture == "llama" and [t.name for t in g.tensors] == ["a", "b"]
    assert g.tensors[0].nbytes == 256 and g.tensors[1].nbytes == 36
    assert g.tensors[1].offset == g.data_offset + 256 and g.data_offset % 32 == 0


@pytest.mark.parametrize("kwargs,words", [
    (dict(magic=b"GGML"), ["magic"]),
    (dict(version=1), ["version 1"]),
    (dict(version=3 << 24), ["big-endian"]),
    (dict(version=7), ["version 7"]),
    (dict(n_tensors=1 << 63), ["tensors"]),
    (dict(n_kv=1 << 40), ["metadata"]),
    (dict(n_tensors=(1 << 64) - 1, n_kv=(1 << 64) - 1), ["tensors"]),
])
def test_bad_header_fields(tmp_path, kwargs, words):
    assert_one_line_error(build(tmp_path, **kwargs), *words)


def test_absurd_string_lengths(tmp_path):
    huge_key = struct.pack("<Q", 1 << 62) + b"general.architecture"
    assert_one_line_error(build(tmp_path, kvs=[huge_key]), "length")
    huge_val = _str("k") + struct.pack("<IQ", 8, (1 << 64) - 1) + b"x"
    assert_one_line_error(build(tmp_path, kvs=[huge_val]), "length")
    huge_name = [("", (32,), 0, 0)]
    p = build(tmp_path, tensors=huge_name)
    raw = bytearray(p.read_bytes())
    i = raw.index(struct.pack("<QI", 0, 1))  # the empty name's length, then n_dims
    raw[i:i + 8] = struct.pack("<Q", 1 << 50)
    p.write_bytes(bytes(raw))
    assert_one_line_error(p, "name length")


def test_absurd_arrays(tmp_path):
    arr = _kv("a", 9, struct.pack("<IQ", 6, 1 << 61))  # 2^61 float32s
    assert_one_line_error(build(tmp_path, kvs=[arr]), "elements")
    sarr = _kv("s", 9, struct.pack("<IQ", 8, 3) + _str("ok") + struct.pack("<Q", 1 << 60))
    assert_one_line_error(build(tmp_path, kvs=[sarr]), "s'[1]")
    nested = _kv("n", 9, struct.pack("<IQ", 9, 1))
    assert_one_line_error(build(tmp_path, kvs=[nested]), "nested")
    assert_one_line_error(build(tmp_path, kvs=[_kv("u", 13, b"\0" * 8)]), "unknown value type")
    assert_one_line_error(build(tmp_path, kvs=[_kv("u", 9, struct.pack("<IQ", 77, 1))]),
                          "element type")


def test_metadata_values_roundtrip(tmp_path):
    kvs = [_kv("i", 5, struct.pack("<i", -3)), _kv("f", 6, struct.pack("<f", 0.5)),
           _kv("b", 7, b"\1"), _kv("u64", 10, struct.pack("<Q", 1 << 63)),
           _kv("fa", 9, struct.pack("<IQ", 6, 2) + struct.pack("<2f", 1.5, -2)),
           _kv("sa", 9, struct.pack("<IQ", 8, 3) + _str("a") + _str("") + _str("héllo"))]
    md = read_gguf(build(tmp_path, kvs=kvs)).metadata
    assert md["i"] == -3 and md["f"] == 0.5 and md["b"] is True and md["u64"] == 1 << 63
    assert md["fa"] == [1.5, -2.0]
    assert isinstance(md["sa"], StringArray) and md["sa"] == ["a", "", "héllo"]
    assert md["sa"][2] == "héllo" and md["sa"][-1] == "héllo" and md["sa"][:2] == ["a", ""]


def test_tensor_table_checks(tmp_path):
    t = lambda *a: build(tmp_path, tensors=list(a))  # noqa: E731
    assert_one_line_error(t(("w", (1, 1, 1, 1, 32), 0, 0)), "n_dims = 5")
    assert_one_line_error(t(("w", (), 0, 0)), "n_dims = 0")
    assert_one_line_error(t(("w", (32, 0), 0, 0)), "at least 1")
    assert_one_line_error(t(("w", (2**31, 2**31, 2**31, 4), 0, 0)), "64 bits")
    assert_one_line_error(t(("w", (32,), 99, 0)), "unknown ggml type id 99")
    assert_one_line_error(t(("w", (33,), 2, 0)), "multiple of the Q4_0 block size 32")
    assert_one_line_error(t(("w", (32,), 0, 4)), "alignment")
    assert_one_line_error(t(("a", (32,), 0, 0), ("b", (32,), 0, 96)), "overlap")
    assert_one_line_error(t(("w", (1 << 20,), 0, 0)), "past the end")
    assert_one_line_error(t(("a", (8,), 0, 0), ("a", (8,), 0, 32)), "duplicate tensor name")
    assert_one_line_error(t(("x" * 64, (8,), 0, 0)), "longer than 63")
    dup = [_kv("general.architecture", 8, _str("llama"))] * 2
    assert_one_line_error(build(tmp_path, kvs=dup), "duplicate metadata key")
    align = [_kv("general.alignment", 4, struct.pack("<I", 48))]
    assert_one_line_error(build(tmp_path, kvs=align), "power of two")


def test_alignment_is_honoured(tmp_path):
    kvs = [_kv("general.alignment", 4, struct.pack("<I", 64))]
    g = read_gguf(build(tmp_path, kvs=kvs, alignment=64, tensors=[("a", (8,), 0, 0),
                                                                   ("b", (8,), 0, 64)]))
    assert g.alignment == 64 and g.data_offset % 64 == 0
    assert_one_line_error(build(tmp_path, kvs=kvs, alignment=64, tensors=[("a", (8,), 0, 32)]),
                          "alignment 64")


def test_not_a_file(tmp_path):
    for p in (tmp_path / "missing.gguf", tmp_path):
        with pytest.raises(GGUFError) as ei:
            read_gguf(p)
        assert "\n" not in str(ei.value)
    empty = tmp_path / "empty.gguf"
    empty.write_bytes(b"")
    assert_one_line_error(empty, "too short")


def test_every_truncation_of_the_header_fails_fast(tmp_path, tiny_models):
    src = tiny_models["Q4_0"]
    info = read_gguf(src)
    data_end = max(t.end for t in info.tensors)  # after it only padding, which may be cut
    path = tmp_path / "trunc.gguf"
    path.write_bytes(src.read_bytes()[:data_end])
    cuts = [*np.linspace(info.data_offset + 64, data_end - 1, 30).astype(int).tolist(),
            *range(info.data_offset + 63, -1, -1)]  # a sample of the data, every header offset
    for n in sorted(set(cuts), reverse=True):
        os.truncate(path, n)
        with pytest.raises(GGUFError) as ei:
            read_gguf(path)
        assert "\n" not in str(ei.value)


@pytest.mark.parametrize("type_name", tiny_model_types())
def test_accepts_tiny_models(tiny_models, type_name):
    g = read_gguf(tiny_models[type_name])
    assert g.version == 3 and g.architecture == "llama" and len(g.tensors) == 20
    assert g.tensor("blk.0.attn_q.weight").type_name == type_name
    assert g.tensor("blk.0.ffn_down.weight").shape == (512, 256)
    assert max(t.end for t in g.tensors) <= g.file_size
    assert len(trainable_tensors(g)) == 14
    assert [t.name for t in trainable_tensors(g, include_embeddings=True)][0] == "token_embd.weight"
    assert len(g.metadata["tokenizer.ggml.tokens"]) == g.metadata["llama.vocab_size"]


def test_tensor_map_views_are_read_only(tiny_models):
    path = tiny_models["Q8_0"]
    with TensorMap(path) as tm:
        v = tm.view("blk.1.ffn_up.weight")
        t = tm.info.tensor("blk.1.ffn_up.weight")
        assert v.dtype == np.uint8 and v.size == t.nbytes and not v.flags.writeable
        with open(path, "rb") as f:
            f.seek(t.offset)
            assert f.read(64) == v[:64].tobytes()
        with pytest.raises(ValueError):
            v[0] = 1
        del v


def test_working_copy_leaves_the_base_alone(tiny_models, tmp_home):
    base = tiny_models["Q4_K"]
    before = sha256_file(base)
    with WorkingCopy(base) as wc:
        assert wc.path.parent == Path(os.environ["EDGEES_WORKDIR"])
        assert wc.path.name.startswith(f"edgees-{os.getpid()}-") and wc.path.exists()
        h0 = wc.sha256()
        names = [t.name for t in trainable_tensors(wc.info)]
        assert len(names) == 14 and "token_embd.weight" not in names
        assert "token_embd.weight" in [t.name for t in trainable_tensors(wc.info, True)]
        v = wc.view(names[0])
        assert v.flags.writeable
        v[:64] ^= 0xFF
        wc.flush()
        assert wc.sha256() != h0
        with open(wc.path, "rb") as f:  # the writes land in the working file itself
            f.seek(wc.info.tensor(names[0]).offset)
            assert f.read(64) == v[:64].tobytes()
        expect = hashlib.sha256(b"".join(wc.view(n).tobytes() for n in names[:3])).hexdigest()
        assert wc.sha256(reversed(names[:3])) == expect  # file order, whatever the given order
        v[:64] ^= 0xFF
        assert wc.sha256() == h0
        del v
        path = wc.path
    assert not path.exists() and wc.closed
    with pytest.raises(ValueError):
        wc.view(names[0])
    wc.close()  # idempotent
    assert sha256_file(base) == before


def test_working_copy_removed_on_gc_and_in_shm(tiny_models, monkeypatch):
    monkeypatch.delenv("EDGEES_WORKDIR")
    wc = WorkingCopy(tiny_models["Q4_0"])
    path = wc.path
    if os.path.isdir("/dev/shm"):
        assert str(path).startswith("/dev/shm/")
    view = wc.view("blk.0.attn_q.weight")
    del wc
    gc.collect()
    assert not path.exists()
    assert view.size > 0  # a view kept past close stays valid memory


def test_working_copy_removed_at_exit_and_stale_ones_swept(tiny_models, tmp_home):
    work = Path(os.environ["EDGEES_WORKDIR"])
    code = ("import sys; from edgees.gguf.working_copy import WorkingCopy; "
            "wc = WorkingCopy(sys.argv[1]); v = wc.view('blk.0.attn_q.weight'); print(wc.path)")
    r = subprocess.run([sys.executable, "-c", code, str(tiny_models["Q8_0"])], cwd=ROOT,
                       env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert Path(r.stdout.strip()).parent == work and not Path(r.stdout.strip()).exists()
    stale = work / "edgees-999999999-abcd1234.gguf"  # a pid that cannot exist
    stale.write_bytes(b"x")
    other = work / "keep-me.gguf"
    other.write_bytes(b"x")
    with WorkingCopy(tiny_models["Q8_0"]):
        assert not stale.exists() and other.exists()


def test_working_copy_of_a_bad_file_leaves_nothing(tmp_path, tmp_home):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\xff" * 40)
    with pytest.raises(GGUFError):
        WorkingCopy(bad)
    assert list(Path(os.environ["EDGEES_WORKDIR"]).iterdir()) == []


# ---- the CLI -------------------------------------------------------------------------------

def _cli(*args):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "edgees.cli", *map(str, args)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=60)


def test_cli_info_bad_inputs_one_line(tmp_path):
    garbage = tmp_path / "garbage.gguf"
    garbage.write_bytes(b"GGUF\x03\x00\x00\x00" + b"\xff" * 100)
    frozen = make_tiny_model(tmp_path / "f16.gguf", "F16", embd_type="F16")
    for bad, word in [(tmp_path / "nope.gguf", "nope.gguf"), (garbage, "byte 8"),
                      (frozen, "nothing trainable")]:
        r = _cli("info", bad)
        lines = r.stderr.strip().splitlines()
        assert r.returncode != 0 and len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
        assert word in lines[0] and lines[0].startswith("edgees: error:"), lines
        assert r.stdout == ""


def test_cli_info_tiny_model(tiny_models):
    r = _cli("info", tiny_models["Q5_K"], "--json")
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert s["architecture"] == "llama" and s["n_tensors"] == 20
    assert s["trainable"]["tensors"] == 14 and s["trainable"]["weights"] == 2 * 589824
    assert s["embeddings_on_request"]["tensors"] == 1 and s["frozen"]["tensors"] == 5
    by_name = {t["name"]: t for t in s["tensors"]}
    assert by_name["blk.0.attn_norm.weight"]["status"] == "frozen"
    assert by_name["blk.0.attn_norm.weight"]["reason"]


# ---- real models ---------------------------------------------------------------------------

@pytest.mark.real
def test_real_smollm2(smollm2_path, tmp_path):
    g = read_gguf(smollm2_path)
    assert g.architecture == "llama" and len(g.tensors) == 272
    assert {t.type_name for t in trainable_tensors(g)} == {"Q4_1"}
    assert len(g.metadata["tokenizer.ggml.tokens"]) == 49152
    assert sha256_file(smollm2_path) == SMOLLM2_SHA256
    _truncations_fail_fast(smollm2_path, g, tmp_path)


@pytest.mark.real
def test_real_gemma(gemma_path, tmp_path):
    g = read_gguf(gemma_path)
    assert g.architecture == "gemma3"
    assert {t.type_name for t in trainable_tensors(g)} >= {"Q5_0", "Q4_K", "Q6_K"}
    assert trainable_tensors(g, True)[0].name == "token_embd.weight"
    _truncations_fail_fast(gemma_path, g, tmp_path)


def _truncations_fail_fast(src, info, tmp_path, n_cuts=12):
    """Cut a real header at spread-out offsets (and just before the data); each fails fast."""
    path = tmp_path / "cut.gguf"
    with open(src, "rb") as f:
        path.write_bytes(f.read(info.data_offset))
    cuts = sorted({*np.linspace(0, info.data_offset - 1, n_cuts).astype(int).tolist(),
                   info.data_offset - 1}, reverse=True)
    for n in cuts:
        os.truncate(path, n)
        with pytest.raises(GGUFError):
            read_gguf(path)
