"""Publishing beyond Ollama and LM Studio: export --to llama-server:URL (the file in the server's
models dir, then GET /models?reload=1 to a local HTTP server the test runs and records), the
daemon's `[publish] to` through the same code (a stub ollama on PATH records its arguments), and
`daemon submit MODEL ... --minutes M`."""

from __future__ import annotations

import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from edgees.daemon.jobs import FOREVER, JobError, parse_job, read_job
from edgees.daemon.paths import jobs_dir
from edgees.stores import publish

from test_daemon import cli, env, job_toml, start_foreground, status, stop, submit, wait_for  # noqa: F401
from test_stores import one_line_error, run
from toy_task import finetune_args, subprocess_env, toy_model, write_answers


class FakeRouter:
    """A router-mode llama-server's /models answer: every *.gguf of models_dir, by file stem; records
    each request line."""

    def __init__(self, models_dir: Path, status: int = 200):
        self.requests: list[tuple[str, str]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                outer.requests.append((self.command, self.path))
                if status != 200:
                    self.send_error(status)
                    return
                data = [{"id": p.stem, "object": "model", "path": str(p), "status": {"value": "unloaded"}}
                        for p in sorted(models_dir.glob("*.gguf"))]
                body = json.dumps({"object": "list", "data": data}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    """A 2-step toy run: (run dir, base model)."""
    d = tmp_path_factory.mktemp("publish-run")
    model = toy_model(d / "toy.gguf")
    data = write_answers(d / "answers.jsonl")
    r = run(subprocess_env(), *finetune_args(model, d / "run", data, steps=2, likelihood=True))
    assert r.returncode == 0, r.stderr
    return d / "run", model


def free_port_url() -> str:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"  # closed again: nothing listens there


def test_export_to_llama_server_places_the_file_and_asks_for_a_rescan(toy_run, tmp_path):
    run_dir, _ = toy_run
    env = subprocess_env()
    models_dir = tmp_path / "server-models"
    models_dir.mkdir()
    router = FakeRouter(models_dir)
    try:
        out = tmp_path / "adapted.gguf"
        r = run(env, "export", run_dir, "-o", out, "--to", f"llama-server:{router.url}/", "--models-dir",
                models_dir, "--json")
        assert r.returncode == 0, r.stderr
        pub = json.loads(r.stdout)["published"]
        dest = models_dir / "adapted.gguf"
        assert router.requests == [("GET", "/models?reload=1")]
        assert pub == {"target": f"llama-server:{router.url}", "path": str(dest), "how": pub["how"],
                       "reloaded": True, "model": "adapted", "models": 1}
        assert pub["how"] in ("hard link", "copy") and dest.read_bytes() == out.read_bytes()  # never moved
        # OUT in the models dir itself (no --models-dir): nothing to place, the rescan only
        r = run(env, "export", run_dir, "-o", models_dir / "second.gguf", "--to", f"llama-server:{router.url}")
        assert r.returncode == 0, r.stderr
        assert f"{router.url} rescanned its models dir and lists it as 'second'" in r.stdout
        assert len(router.requests) == 2
        # the file in the models dir exists: --force replaces it (the rescan again)
        r = run(env, "export", run_dir, "-o", out, "--force", "--to", f"llama-server:{router.url}",
                "--models-dir", models_dir)
        assert r.returncode == 0 and len(router.requests) == 3, r.stderr
    finally:
        router.close()


def test_llama_server_errors_are_one_line(toy_run, tmp_path):
    run_dir, _ = toy_run
    env = subprocess_env()
    out = tmp_path / "a.gguf"
    url = free_port_url()
    line = one_line_error(run(env, "export", run_dir, "-o", out, "--to", f"llama-server:{url}"))
    assert f"llama-server at {url} is not reachable" in line and f"{out} is written" in line
    assert out.is_file()  # the export stands; only the rescan failed
    router = FakeRouter(tmp_path, status=404)  # a server that is not a router (or too old to rescan)
    try:
        line = one_line_error(run(env, "export", run_dir, "-o", out, "--force", "--to", f"llama-server:{router.url}"))
        assert "answered HTTP 404 to GET /models?reload=1" in line
    finally:
        router.close()
    line = one_line_error(run(env, "export", run_dir, "-o", tmp_path / "b.gguf", "--to", "llama-server:ftp://x"))
    assert "give the server's URL, e.g. --to llama-server:http://127.0.0.1:8080" in line
    line = one_line_error(run(env, "export", run_dir, "-o", tmp_path / "b.gguf", "--models-dir", tmp_path))
    assert "--models-dir goes with --to llama-server:URL" in line
    line = one_line_error(run(env, "export", run_dir, "-o", tmp_path / "b.gguf", "--to", "llama-server:http://h:1",
                              "--models-dir", tmp_path / "none"))
    assert "is not a directory" in line and not (tmp_path / "b.gguf").exists()
    taken = tmp_path / "models"
    taken.mkdir()
    (taken / "b.gguf").write_bytes(b"the server's")
    line = one_line_error(run(env, "export", run_dir, "-o", tmp_path / "b.gguf", "--to", "llama-server:http://h:1",
                              "--models-dir", taken))
    assert f"{taken / 'b.gguf'} exists; pass --force" in line and not (tmp_path / "b.gguf").exists()


def test_a_job_names_its_target_in_one_line_when_it_is_wrong(tmp_path):
    base = 'name = "j"\nmodel = "m.gguf"\ntask = "arithmetic"\n[publish]\n'
    assert parse_job(base + 'to = "ollama:mine"\n', tmp_path / "j.toml").publish.to == "ollama:mine"
    assert parse_job(base + 'to = "llama-server:http://127.0.0.1:8080"\n').publish.to.startswith("llama-server:")
    for to, words in (("ollama:a b", 'give an Ollama model name, e.g. [publish] to = "ollama:j"'),
                      ("llama-server:nope", "give the server's URL"), ("vllm:x", "not a target")):
        with pytest.raises(JobError) as err:
            parse_job(base + f'to = "{to}"\n', tmp_path / "j.toml")
        assert words in str(err.value) and "\n" not in str(err.value), str(err.value)


def test_submit_minutes_is_the_jobs_daily_budget(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = cli("daemon", "submit", "toy.gguf", "--task", "arithmetic", "--minutes", "30", "--name", "daily",
            "--publish-to", "ollama:daily")
    assert "30 minutes a day" in r.stdout and "and ollama:daily" in r.stdout
    job = read_job(jobs_dir() / "daily.toml")
    assert job.minutes == 30.0 and job.steps == FOREVER and job.publish.to == "ollama:daily"
    cli("daemon", "submit", "toy.gguf", "--task", "arithmetic", "--minutes", "5", "--steps", "40", "--name", "both")
    job = read_job(jobs_dir() / "both.toml")
    assert job.minutes == 5.0 and job.steps == 40 and job.publish is None
    bad = cli("daemon", "submit", "toy.gguf", "--task", "arithmetic", "--minutes", "0", "--name", "bad", check=False)
    assert bad.returncode != 0 and "budget.minutes must be in (0, 1440]" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_the_daemon_publishes_to_ollama_by_the_export_code(env, tmp_path, monkeypatch):
    bin_dir, calls = tmp_path / "bin", tmp_path / "ollama-calls"
    bin_dir.mkdir()
    stub = bin_dir / "ollama"
    stub.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" >> {calls}\necho "success"\n')
    stub.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")  # the daemon inherits it
    publish_table = '[publish]\ndir = "pub"\nevery = 2\nkeep = 1\nmargin = 1000.0\nto = "ollama:toy-live"\n'
    submit(env, "toy", job_toml("toy", 4, publish_table))  # margin: every version passes the gate
    proc = start_foreground()
    try:
        wait_for("job done", lambda: status()["jobs"]["toy"]["state"] == "done", proc)
        last = status()["jobs"]["toy"]["last_publish"]
    finally:
        assert stop(proc) == 0
    pub = env / "pub"
    assert last["step"] == 4 and last["to"]["ran"] and last["to"]["target"] == "ollama:toy-live"
    mf = pub / "toy-4.Modelfile"
    assert calls.read_text().splitlines()[-4:] == ["create", "toy-live", "-f", str(mf)]
    assert f"FROM {pub / 'toy-4.gguf'}\n" in mf.read_text()
    assert sorted(p.name for p in pub.iterdir() if p.suffix in (".gguf", ".Modelfile")) == [
        "toy-4.Modelfile", "toy-4.gguf", "toy.gguf"]  # keep = 1: the older version's Modelfile went with it
    assert "published to ollama:toy-live" in cli("daemon", "logs", "-n", "200").stdout


def test_publish_to_dispatches_by_kind(tmp_path, monkeypatch):
    out = tmp_path / "m.gguf"
    out.write_bytes(b"GGUF" + bytes(60))
    want = ("llama-server", "https://box:8080/llama")
    assert publish.parse_target("llama-server:https://box:8080/llama/", out) == want
    router = FakeRouter(tmp_path)
    try:
        res = publish.publish_to("llama-server", router.url, out, out, force=False)
        assert res["model"] == "m" and res["how"] == "in place" and router.requests == [("GET", "/models?reload=1")]
    finally:
        router.close()
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))
    res = publish.publish_to("ollama", "m", out, out, force=False)
    assert not res["ran"] and res["command"] == f"ollama create m -f {tmp_path / 'm.Modelfile'}"


def test_the_gate_compares_on_a_shared_metric_when_the_reference_predates_the_primary():
    from edgees.daemon.publish import gate

    new = {"macro_f1": 0.30, "strict": 0.40, "lenient": 0.5, "n": 20, "seconds": 3.0}
    assert gate(new, None, "macro_f1", 0.0) == (True, "nothing to compare with", "macro_f1")
    ok, why, key = gate(new, {"macro_f1": 0.35, "strict": 0.1}, "macro_f1", 0.02)
    assert (ok, key) == (False, "macro_f1") and why.startswith("macro_f1 0.3000 is worse than 0.3500")
    # published before macro_f1 existed: compared on strict, the first metric both have, and said so
    ok, why, key = gate(new, {"strict": 0.45, "lenient": 0.5, "n": 20}, "macro_f1", 0.02)
    assert (ok, key) == (False, "strict") and why.endswith("(macro_f1 is not in the reference)")
    ok, _, key = gate(new, {"strict": 0.41, "n": 20}, "macro_f1", 0.02)
    assert (ok, key) == (True, "strict")
    ok, why, key = gate(new, {"reward": 0.9, "n": 20}, "macro_f1", 0.0)  # nothing in common
    assert ok and key == "macro_f1" and why == "nothing to compare with (macro_f1 is not in the reference)"
