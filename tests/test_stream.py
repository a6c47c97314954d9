"""Streaming generation (engine/stream.py) gives generate()'s text piece by piece, stop strings cut
the same way; `edgees chat` on a terminal (a pty here) prints the answer as it is decoded."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import time

import pytest

from edgees.engine.engine import Engine
from edgees.engine.stream import stream

from toy_task import edgees_cmd, subprocess_env, toy_model

PROMPTS = ["Write a short sentence about 3 apples.", [{"role": "user", "content": "Say something."}],
           "x", "The apples are"]


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    model = toy_model(tmp_path_factory.mktemp("stream") / "toy.gguf")
    with Engine(model, n_threads=1, n_seq=4, max_tokens=24) as e:
        yield e


def test_the_stream_is_generates_text_in_pieces(engine):
    for prompt in PROMPTS:
        want = engine.generate([prompt], max_tokens=24)[0]
        pieces = list(stream(engine, prompt, max_tokens=24))
        assert "".join(pieces) == want
        assert len(pieces) > 1 or len(want) <= 1  # it streams, not one answer at the end
    assert list(stream(engine, PROMPTS[0], max_tokens=0)) == []


def test_stop_strings_are_cut_as_generate_cuts_them(engine):
    full = engine.generate([PROMPTS[0]], max_tokens=24)[0]
    assert len(full) >= 6
    cut = 0
    for stop in (full[3:5], full[-2:], full[:1], full[2], "never in it"):
        want = engine.generate([PROMPTS[0]], max_tokens=24, stop=[stop])[0]
        got = "".join(stream(engine, PROMPTS[0], max_tokens=24, stop=[stop]))
        assert got == want
        cut += len(want) < len(full)  # (a stop string spanning bytes that do not decode is not found by either)
    assert cut >= 2


def test_chat_streams_to_a_terminal(engine, tmp_path):
    want = engine.generate([[{"role": "user", "content": "hello"}]], max_tokens=12)[0].strip()
    master, slave = pty.openpty()
    p = subprocess.Popen(edgees_cmd(["chat", str(engine.path), "--max-tokens", "12", "--threads", "1"]),
                         stdin=slave, stdout=slave, stderr=slave, env=subprocess_env(), close_fds=True)
    os.close(slave)
    out = b""
    sent = ended = False
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            out += chunk
        if not sent and b"> " in out:
            os.write(master, b"hello\n")
            sent = True
        elif sent and not ended and out.count(b"> ") >= 2:  # answered, asking again: end the conversation
            os.write(master, b"\x04")
            ended = True
        if p.poll() is not None and not ready:
            break
    if p.poll() is None:
        p.kill()
    p.wait(timeout=60)
    os.close(master)
    text = out.decode("utf-8", "replace").replace("\r\n", "\n")
    assert p.returncode == 0, text
    answer = text.split("> hello\n", 1)[1].split("\n> ", 1)[0]  # input() prompts on stderr: the pty too
    assert answer.strip() == want
