"""Other tools' stores, built in a temp dir as those tools lay them out (an Ollama store with manifests
and blobs, an LM Studio tree, a HF hub cache with snapshot symlinks, llama.cpp's cache) around tiny
GGUFs: discovery lists each, the name forms resolve, broken entries are one line each, finetune and
eval run on store models and leave every store file byte-identical; export --to ollama/lmstudio."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from edgees import models, stores
from edgees.errors import ModelNotFound, UnsupportedModel
from edgees.fileio import sha256_file
from edgees.gguf.tiny import make_tiny_model
from toy_task import edgees_cmd, finetune_args, subprocess_env, toy_model, write_answers

OLLAMA_TEMPLATE = "{{ if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}<|im_start|>user\n" \
                  "{{ .Prompt }}<|im_end|>\n<|im_start|>assistant\n"
OLLAMA_SYSTEM = "You answer with one short sentence."
OLLAMA_PARAMS = {"stop": ["<|im_start|>", "<|im_end|>"], "temperature": 0.2, "num_ctx": 256}


# ---- store layouts, as each tool writes them --------------------------------------------------

def _blob(root: Path, data: bytes) -> dict:
    digest = hashlib.sha256(data).hexdigest()
    (root / "blobs").mkdir(parents=True, exist_ok=True)
    (root / "blobs" / f"sha256-{digest}").write_bytes(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def ollama_model(root: Path, name: str, tag: str, gguf: bytes | None, *, chat: bool = True,
                 model_digest: str | None = None, template: str | None = OLLAMA_TEMPLATE,
                 system: str | None = OLLAMA_SYSTEM, params: dict | None = OLLAMA_PARAMS) -> Path:
    """A manifest at manifests/registry.ollama.ai/library/<name>/<tag> and its blobs (Ollama's
    layout); model_digest overrides the model layer's digest (a blob that is not there); chat=False
    leaves out the template, system and params layers (each None: that one)."""
    layers = []
    if gguf is not None:
        layer = _blob(root, gguf)
        layers.append({"mediaType": "application/vnd.ollama.image.model", **layer,
                       **({"digest": model_digest} if model_digest else {})})
    texts = {"template": template, "system": system, "params": None if params is None else json.dumps(params)}
    layers += [{"mediaType": f"application/vnd.ollama.image.{kind}", **_blob(root, text.encode())}
               for kind, text in texts.items() if chat and text is not None]
    config = _blob(root, json.dumps({"model_format": "gguf", "model_family": "llama"}).encode())
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                "config": {"mediaType": "application/vnd.docker.container.image.v1+json", **config},
                "layers": layers}
    path = root / "manifests" / "registry.ollama.ai" / "library" / name / tag
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(manifest))
    return path


def hf_repo(hub: Path, repo: str, files: dict[str, bytes], revision: str = "0123abcd" * 5) -> Path:
    """models--org--repo/{blobs/<sha256>, snapshots/<rev>/<file> -> ../../blobs/<sha256>, refs/main}."""
    d = hub / ("models--" + repo.replace("/", "--"))
    (d / "blobs").mkdir(parents=True)
    (d / "refs").mkdir()
    (d / "refs" / "main").write_text(revision)
    snap = d / "snapshots" / revision
    snap.mkdir(parents=True)
    for name, data in files.items():
        digest = hashlib.sha256(data).hexdigest()
        (d / "blobs" / digest).write_bytes(data)
        (snap / name).symlink_to(Path("..") / ".." / "blobs" / digest)
    return d


@pytest.fixture
def store_env(tmp_path, tiny_models, monkeypatch):
    """HOME, OLLAMA_MODELS, HF_HOME and LLAMA_CACHE in tmp, each store holding a tiny model, plus
    broken entries; returns (env for subprocesses, dict of paths)."""
    home = tmp_path / "home"
    ollama, hf_home, llama = tmp_path / "ollama", tmp_path / "hf", tmp_path / "llama-cache"
    toy = toy_model(tmp_path / "toy.gguf").read_bytes()
    q8 = tiny_models["Q8_0"].read_bytes()
    ollama_model(ollama, "toy", "latest", toy)
    ollama_model(ollama, "plain", "q8", q8, chat=False)
    ollama_model(ollama, "malformed", "latest", None).write_text('{"schemaVersion": 2, "layers": [')
    ollama_model(ollama, "noblob", "latest", q8, model_digest="sha256:" + "0" * 64)
    ollama_model(ollama, "notgguf", "latest", b"this is a safetensors file, not a GGUF\n" * 10)
    lms = home / ".lmstudio" / "models"
    (lms / "pub" / "toy-GGUF").mkdir(parents=True)
    (lms / "pub" / "toy-GGUF" / "toy-Q4_1.gguf").write_bytes(toy)
    (lms / "pub" / "toy-GGUF" / "mmproj-toy-f16.gguf").write_bytes(q8)  # a projector: not listed
    (lms / "pub" / "big-GGUF").mkdir(parents=True)
    for i in (1, 2):
        (lms / "pub" / "big-GGUF" / f"big-Q8_0-0000{i}-of-00002.gguf").write_bytes(q8 if i == 1 else b"rest")
    hf_repo(hf_home / "hub", "org/toy-GGUF", {"toy-q4_1.gguf": toy, "README.md": b"# toy\n"})
    llama.mkdir()
    (llama / "org_tiny-GGUF_tiny-q8_0.gguf").write_bytes(q8)
    env = {"HOME": str(home), "OLLAMA_MODELS": str(ollama), "HF_HOME": str(hf_home), "LLAMA_CACHE": str(llama)}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    for k in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "XDG_CACHE_HOME"):
        monkeypatch.delenv(k, raising=False)
    return {**subprocess_env(), **env}, {"ollama": ollama, "lmstudio": lms, "hf": hf_home, "llama.cpp": llama,
                                         "toy": toy, "q8": q8}


def run(env, *args, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run(edgees_cmd([str(a) for a in args]), capture_output=True, text=True, env=env,
                          timeout=timeout)


def one_line_error(r: subprocess.CompletedProcess) -> str:
    assert r.returncode != 0 and "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgees: error: "), r.stderr
    return lines[0]


def snapshot(*roots: Path) -> dict[str, tuple]:
    """Every file (and symlink) under the roots: content sha256, size, mtime; links: their target."""
    out = {}
    for root in roots:
        for p in sorted(root.rglob("*")):
            if p.is_symlink():
                out[str(p)] = ("link", os.readlink(p))
            elif p.is_file():
                st = p.stat()
                out[str(p)] = (sha256_file(p), st.st_size, st.st_mtime_ns)
            else:
                out[str(p)] = ("dir",)
    return out


# ---- discovery and names ----------------------------------------------------------------------

def test_models_ls_lists_every_store_and_one_line_per_broken_entry(store_env):
    env, paths = store_env
    r = run(env, "models", "ls", "--json")
    assert r.returncode == 0, r.stderr
    rows = {row["name"]: row for row in json.loads(r.stdout)}
    assert rows["smollm2-135m"]["source"] == "registry"
    good = {"ollama:toy:latest": "ollama", "ollama:plain:q8": "ollama", "lmstudio:pub/toy-GGUF/toy-Q4_1.gguf": "lmstudio",
            "hf:org/toy-GGUF/toy-q4_1.gguf": "hf", str(paths["llama.cpp"] / "org_tiny-GGUF_tiny-q8_0.gguf"): "llama.cpp"}
    for name, source in good.items():
        row = rows[name]
        assert row["source"] == source and row["error"] is None and row["trainable"] == "yes", row
        assert row["size"] == len(paths["toy"] if "toy" in name else paths["q8"])
    assert rows["ollama:toy:latest"]["types"] == ["Q4_1", "Q8_0"]
    assert rows["ollama:plain:q8"]["types"] == ["Q8_0"]
    assert not any("mmproj" in n for n in rows)
    broken = {"ollama:malformed:latest": "not valid JSON", "ollama:noblob:latest": "is missing",
              "ollama:notgguf:latest": "not a GGUF", "lmstudio:pub/big-GGUF/big-Q8_0-00001-of-00002.gguf":
              "not supported yet"}
    for name, why in broken.items():
        err = rows[name]["error"]
        assert why in err and "\n" not in err and err.startswith(name), err
    assert rows["ollama:noblob:latest"]["error"].endswith("`ollama pull noblob:latest` to repair the store")
    human = run(env, "models", "ls")
    assert human.returncode == 0, human.stderr
    lines = human.stdout.splitlines()
    for name in [*good, *broken]:
        mine = [line for line in lines if f" {name} " in line or line.rstrip().endswith(f" {name}")]
        assert len(mine) == 1, (name, lines)
    assert all("error:" in line for line in lines if any(f" {b} " in line for b in broken))
    only = json.loads(run(env, "models", "ls", "--json", "--source", "hf").stdout)
    assert [row["name"] for row in only] == ["hf:org/toy-GGUF/toy-q4_1.gguf"]


def test_names_resolve_to_the_store_files(store_env):
    _, paths = store_env
    toy_blob = paths["ollama"] / "blobs" / f"sha256-{hashlib.sha256(paths['toy']).hexdigest()}"
    assert models.resolve_model("ollama:toy") == toy_blob
    assert models.resolve_model("ollama:toy:latest") == toy_blob
    assert models.resolve_model("ollama:library/toy:latest") == toy_blob
    assert models.resolve_model("ollama:registry.ollama.ai/library/toy") == toy_blob
    lms_file = paths["lmstudio"] / "pub" / "toy-GGUF" / "toy-Q4_1.gguf"
    assert models.resolve_model("lmstudio:pub/toy-GGUF") == lms_file  # the projector is not a model
    assert models.resolve_model("lmstudio:pub/toy-GGUF/toy-Q4_1.gguf") == lms_file
    snap = models.resolve_model("hf:org/toy-GGUF")
    assert snap == models.resolve_model("hf:org/toy-GGUF/toy-q4_1.gguf")
    assert snap.is_symlink() and "snapshots" in snap.parts and snap.read_bytes() == paths["toy"]
    # the name a run records (run.json base_name): as `models ls` lists it; a path or registry name: none
    for given in ("ollama:toy", "ollama:library/toy:latest", "ollama:registry.ollama.ai/library/toy"):
        assert models.store_name(given) == "ollama:toy:latest"
    assert models.store_name("ollama:me/m:v2") == "ollama:me/m:v2"
    assert models.store_name("hf:org/toy-GGUF") == "hf:org/toy-GGUF"
    assert models.store_name(lms_file) is None and models.store_name("smollm2-135m") is None


@pytest.mark.parametrize("name, cls, pattern", [
    ("ollama:toyy", ModelNotFound, r"no model 'ollama:toyy' in the ollama store \(closest: ollama:toy:latest"),
    ("toy", ModelNotFound, r"unknown model 'toy': closest: .*ollama:toy:latest.*known models are smollm2-135m"),
    ("ollama:toy:v9", ModelNotFound, r"closest: ollama:toy:latest"),
    ("ollama:noblob", ModelNotFound, r"model blob .* is missing; `ollama pull noblob:latest`"),
    ("ollama:notgguf", ModelNotFound, r"is not a GGUF file"),
    ("ollama:malformed", ModelNotFound, r"not valid JSON"),
    ("ollama:../../etc/passwd", ModelNotFound, r"not an Ollama model name"),
    ("lmstudio:pub/big-GGUF", UnsupportedModel, r"split GGUF in 2 files: not supported yet; .*llama-gguf-split --merge"),
    ("hf:org/toy-GGUF/nope.gguf", ModelNotFound, r"closest: hf:org/toy-GGUF/toy-q4_1.gguf"),
    ("hf:org/toy-gguf", ModelNotFound, r"no model 'hf:org/toy-gguf' in the hf store \(closest: hf:org/toy-GGUF/"),
    ("hf:org/missing", ModelNotFound, r"in the hf store \(none has a close name\); `edgees models ls` lists them all"),
    ("hf:", ModelNotFound, r"give a model after the prefix"),
])
def test_a_name_that_matches_nothing_is_one_line_with_the_closest(store_env, name, cls, pattern):
    with pytest.raises(cls) as err:
        models.resolve_model(name)
    assert re.search(pattern, str(err.value)) and "\n" not in str(err.value), str(err.value)


def test_a_split_file_given_by_path_is_not_supported_yet(store_env):
    part = store_env[1]["lmstudio"] / "pub" / "big-GGUF" / "big-Q8_0-00001-of-00002.gguf"
    with pytest.raises(UnsupportedModel, match="split GGUF in 2 files: not supported yet"):
        models.resolve_model(part)


def test_no_store_on_the_machine_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("OLLAMA_MODELS", str(tmp_path / "none"))
    assert stores.discover() == []
    with pytest.raises(ModelNotFound, match=r"looked in .*none"):
        models.resolve_model("ollama:llama3.2")


def test_every_test_sees_empty_stores_and_the_service_store_moves(tiny_models, tmp_path, monkeypatch):
    """conftest's tmp_home: HOME, the caches and the Ollama stores are this test's own (nothing the
    machine holds is listed); EDGEES_OLLAMA_SYSTEM_STORE relocates /usr/share/ollama's store."""
    assert stores.discover() == [] and not str(Path.home()).startswith(("/root", "/home"))
    monkeypatch.delenv("OLLAMA_MODELS")
    service = tmp_path / "service-store"
    ollama_model(service, "sys", "latest", tiny_models["Q8_0"].read_bytes(), chat=False)
    monkeypatch.setenv("EDGEES_OLLAMA_SYSTEM_STORE", str(service))
    assert [e.ref for e in stores.discover()] == ["ollama:sys:latest"]
    assert models.resolve_model("ollama:sys").parent == service / "blobs"
    monkeypatch.setenv("EDGEES_OLLAMA_SYSTEM_STORE", "")  # empty: no service store at all
    assert stores.discover() == []
    with pytest.raises(ModelNotFound) as err:
        models.resolve_model("ollama:sys")
    assert "/usr/share/ollama" not in str(err.value)


# ---- the stores are only read -----------------------------------------------------------------

@pytest.mark.slow
def test_finetune_and_eval_on_store_models_leave_the_stores_byte_identical(store_env, tmp_path):
    env, paths = store_env
    roots = [paths[k] for k in ("ollama", "lmstudio", "hf", "llama.cpp")]
    before = snapshot(*roots)
    data = write_answers(tmp_path / "answers.jsonl")
    for i, name in enumerate(["ollama:toy", "hf:org/toy-GGUF", "lmstudio:pub/toy-GGUF"]):
        r = run(env, *finetune_args(name, tmp_path / f"run{i}", data, steps=2, likelihood=True))
        assert r.returncode == 0, r.stderr
        header = json.loads((tmp_path / f"run{i}" / "run.json").read_text())
        assert header["base_sha256"] == hashlib.sha256(paths["toy"]).hexdigest()
    r = run(env, "eval", "ollama:plain:q8", "--task", "arithmetic", "--n", "2", "--json", "--threads", "1")
    assert r.returncode == 0, r.stderr
    r = run(env, "eval", paths["llama.cpp"] / "org_tiny-GGUF_tiny-q8_0.gguf", "--task", "arithmetic",
            "--n", "2", "--threads", "1")
    assert r.returncode == 0, r.stderr
    r = run(env, "export", tmp_path / "run0", "-o", tmp_path / "out.gguf")
    assert r.returncode == 0, r.stderr
    assert snapshot(*roots) == before


@pytest.mark.parametrize("name", ["hf:org/toy-GGUF", "hf:org/toy-GGUF/toy-q4_1.gguf", "lmstudio:pub/toy-GGUF",
                                  "lmstudio:pub/toy-GGUF/toy-Q4_1.gguf"])
def test_eval_on_hf_and_lmstudio_names_leaves_the_stores_byte_identical(store_env, name):
    env, paths = store_env
    roots = [paths[k] for k in ("ollama", "lmstudio", "hf", "llama.cpp")]
    before = snapshot(*roots)  # every file's sha256, size and mtime; symlinks' targets
    r = run(env, "eval", name, "--task", "arithmetic", "--n", "2", "--json", "--threads", "1")
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["model"] == name and Path(res["path"]).read_bytes() == paths["toy"] and res["n"] == 2
    assert snapshot(*roots) == before


# ---- publishing: export --to ollama / lmstudio --------------------------------------------------

def _modelfile_block(text: str, keyword: str) -> str:
    m = re.search(rf'^{keyword} """(.*?)"""$', text, re.S | re.M)
    assert m, text
    return m.group(1)


@pytest.fixture
def ollama_run(store_env, tmp_path):
    """A 2-step toy run whose base is ollama:toy: (env, paths, run dir)."""
    env, paths = store_env
    data = write_answers(tmp_path / "answers.jsonl")
    r = run(env, *finetune_args("ollama:toy", tmp_path / "run", data, steps=2, likelihood=True))
    assert r.returncode == 0, r.stderr
    return env, paths, tmp_path / "run"


def test_export_to_ollama_runs_ollama_create_with_the_bases_template(ollama_run, tmp_path):
    env, paths, run_dir = ollama_run
    before = snapshot(paths["ollama"])
    bin_dir, calls = tmp_path / "bin", tmp_path / "ollama-calls"
    bin_dir.mkdir()
    stub = bin_dir / "ollama"
    stub.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" >> {calls}\necho "success"\n')
    stub.chmod(0o755)
    out = tmp_path / "adapted.gguf"
    env = {**env, "PATH": f"{bin_dir}{os.pathsep}{env['PATH']}"}
    r = run(env, "export", run_dir, "-o", out, "--to", "ollama:adapted", "--json")
    assert r.returncode == 0, r.stderr
    pub = json.loads(r.stdout)["published"]
    mf = tmp_path / "adapted.Modelfile"
    assert pub["ran"] and pub["modelfile"] == str(mf) and pub["from_ollama_base"] == "ollama:toy:latest"
    assert calls.read_text().splitlines() == ["create", "adapted", "-f", str(mf)]
    text = mf.read_text()
    assert re.search(rf"^FROM {re.escape(str(out))}$", text, re.M)
    assert _modelfile_block(text, "TEMPLATE") == OLLAMA_TEMPLATE
    assert _modelfile_block(text, "SYSTEM") == OLLAMA_SYSTEM
    params = [line for line in text.splitlines() if line.startswith("PARAMETER ")]
    assert params == ['PARAMETER stop "<|im_start|>"', 'PARAMETER stop "<|im_end|>"',
                      "PARAMETER temperature 0.2", "PARAMETER num_ctx 256"]
    assert snapshot(paths["ollama"]) == before  # edgees itself never writes into Ollama's store

    # ollama not on PATH: the exact command is printed; an existing Modelfile needs --force
    r = run({**env, "PATH": str(tmp_path / "nowhere")}, "export", run_dir, "-o", out, "--force",
            "--to", "ollama:me/adapted:v2")
    assert r.returncode == 0, r.stderr
    assert f"  ollama create me/adapted:v2 -f {mf}" in r.stdout.splitlines()
    assert "copies the GGUF into its own store" in r.stdout
    line = one_line_error(run(env, "export", run_dir, "-o", tmp_path / "new.gguf", "--to", "ollama:a b"))
    assert "give an Ollama model name" in line and not (tmp_path / "new.gguf").exists()
    (tmp_path / "other.Modelfile").write_text("mine\n")
    line = one_line_error(run(env, "export", run_dir, "-o", tmp_path / "other.gguf", "--to", "ollama:x"))
    assert "other.Modelfile exists; pass --force" in line
    assert not (tmp_path / "other.gguf").exists() and (tmp_path / "other.Modelfile").read_text() == "mine\n"


def test_export_of_a_run_on_a_non_ollama_base_writes_a_plain_modelfile(store_env, tmp_path):
    env, _ = store_env
    data = write_answers(tmp_path / "answers.jsonl")
    assert run(env, *finetune_args("hf:org/toy-GGUF", tmp_path / "run", data, steps=1, likelihood=True)).returncode == 0
    r = run({**env, "PATH": str(tmp_path / "nowhere")}, "export", tmp_path / "run", "-o", tmp_path / "a.gguf",
            "--to", "ollama:a")
    assert r.returncode == 0, r.stderr
    text = (tmp_path / "a.Modelfile").read_text()
    assert f"FROM {tmp_path / 'a.gguf'}\n" in text and "TEMPLATE" not in text and "PARAMETER" not in text
    assert f"wrote {tmp_path / 'a.Modelfile'}: FROM the GGUF alone (the base did not come from an Ollama " \
           "store" in r.stdout
    assert json.loads((tmp_path / "run" / "run.json").read_text())["base_name"] == "hf:org/toy-GGUF"


def test_export_to_ollama_takes_the_settings_of_the_tag_the_run_started_from(store_env, tmp_path):
    """toy:latest and toy:v2 share one model blob but chat differently; a run from ollama:toy:v2
    records that name (run.json base_name) and its Modelfile carries v2's template and params, not
    those of the first manifest by name. A run without the name (made before edgees recorded it)
    gets the first manifest that uses the blob, as before."""
    env, paths = store_env
    template_v2 = "<|user|>{{ .Prompt }}<|assistant|>"
    ollama_model(paths["ollama"], "toy", "v2", paths["toy"], template=template_v2, system=None,
                 params={"temperature": 0.7, "stop": "<|user|>"})
    data = write_answers(tmp_path / "answers.jsonl")
    run_dir = tmp_path / "run"
    r = run(env, *finetune_args("ollama:library/toy:v2", run_dir, data, steps=2, likelihood=True))
    assert r.returncode == 0, r.stderr
    header_path = run_dir / "run.json"
    header = json.loads(header_path.read_text())
    assert header["base_name"] == "ollama:toy:v2"
    assert header["base_model"] == str(models.resolve_model("ollama:toy:latest"))  # one blob for both
    env = {**env, "PATH": str(tmp_path / "nowhere")}
    r = run(env, "export", run_dir, "-o", tmp_path / "a.gguf", "--to", "ollama:a")
    assert r.returncode == 0, r.stderr
    text = (tmp_path / "a.Modelfile").read_text()
    assert _modelfile_block(text, "TEMPLATE") == template_v2 and "SYSTEM" not in text
    assert [line for line in text.splitlines() if line.startswith("PARAMETER ")] == \
        ["PARAMETER temperature 0.7", 'PARAMETER stop "<|user|>"']
    assert f"wrote {tmp_path / 'a.Modelfile'}: FROM the GGUF, with ollama:toy:v2's TEMPLATE and 2 PARAMETER " \
           "lines\n" in r.stdout

    del header["base_name"]  # a run made before edgees recorded the name: the blob decides
    header_path.write_text(json.dumps(header))
    r = run(env, "export", run_dir, "-o", tmp_path / "b.gguf", "--to", "ollama:b", "--json")
    assert r.returncode == 0, r.stderr
    pub = json.loads(r.stdout)["published"]
    assert pub["from_ollama_base"] == "ollama:toy:latest"
    assert pub["carried"] == ["TEMPLATE", "SYSTEM", "4 PARAMETER lines"]
    assert _modelfile_block((tmp_path / "b.Modelfile").read_text(), "TEMPLATE") == OLLAMA_TEMPLATE


def test_the_modelfile_line_names_exactly_what_was_carried():
    from edgees.commands.export import describe_carried as carried
    from edgees.stores.publish import carried as carried_from

    base = "ollama:m:latest"
    assert carried_from({"name": "m:latest", "template": "T", "system": None, "params": None}) == ["TEMPLATE"]
    assert carried_from({"name": "m:latest", "template": None, "system": "S",
                         "params": {"stop": ["a", "b"], "top_k": 20}}) == ["SYSTEM", "3 PARAMETER lines"]
    assert carried_from({"name": "m:latest", "template": None, "system": None, "params": {"top_k": 20}}) == \
        ["1 PARAMETER line"]
    assert carried({"from_ollama_base": base, "carried": ["TEMPLATE"]}) == f"FROM the GGUF, with {base}'s TEMPLATE"
    assert carried({"from_ollama_base": base, "carried": ["TEMPLATE", "SYSTEM", "1 PARAMETER line"]}) == \
        f"FROM the GGUF, with {base}'s TEMPLATE, SYSTEM and 1 PARAMETER line"
    assert carried({"from_ollama_base": base, "carried": []}) == \
        f"FROM the GGUF alone ({base} has no TEMPLATE, SYSTEM or PARAMETER to carry)"
    assert carried({"from_ollama_base": None, "carried": []}).startswith("FROM the GGUF alone (the base did not")


def test_export_to_lmstudio_links_or_copies_into_its_tree(ollama_run, tmp_path):
    env, paths, run_dir = ollama_run
    out = tmp_path / "adapted.gguf"
    r = run(env, "export", run_dir, "-o", out, "--to", "lmstudio", "--json")
    assert r.returncode == 0, r.stderr
    pub = json.loads(r.stdout)["published"]
    dest = paths["lmstudio"] / "edgees" / "adapted" / "adapted.gguf"
    assert pub["path"] == str(dest) and pub["how"] in ("hard link", "copy")
    assert out.is_file() and dest.read_bytes() == out.read_bytes()  # never moved
    assert models.resolve_model("lmstudio:edgees/adapted") == dest
    again = tmp_path / "again"
    again.mkdir()
    line = one_line_error(run(env, "export", run_dir, "-o", again / "adapted.gguf", "--to", "lmstudio:edgees/adapted"))
    assert f"{dest} exists; pass --force" in line and not list(again.iterdir())
    r = run(env, "export", run_dir, "-o", out, "--force", "--to", "lmstudio:edgees/adapted")
    assert r.returncode == 0 and "placed in LM Studio as lmstudio:edgees/adapted/adapted.gguf" in r.stdout


def test_export_to_lmstudio_names_the_lms_import_command_and_an_unwritable_dir(ollama_run, tmp_path):
    """With `lms` on PATH (a stub that must not run): after placing the file, the `lms import` line
    that does the same (--copy: lms import moves the file by default); a models dir that cannot be
    written is one line naming it, with that command, or without lms the place to copy to."""
    env, paths, run_dir = ollama_run
    bin_dir, ran = tmp_path / "bin", tmp_path / "lms-ran"
    bin_dir.mkdir()
    stub = bin_dir / "lms"
    stub.write_text(f"#!/bin/sh\ntouch {ran}\n")
    stub.chmod(0o755)
    with_lms = {**env, "PATH": f"{bin_dir}{os.pathsep}{env['PATH']}"}
    out = tmp_path / "adapted.gguf"
    r = run(with_lms, "export", run_dir, "-o", out, "--to", "lmstudio:me/adapted")
    assert r.returncode == 0, r.stderr
    assert (paths["lmstudio"] / "me" / "adapted" / "adapted.gguf").read_bytes() == out.read_bytes()
    assert f"  the same with LM Studio's CLI: lms import {out} --copy --user-repo me/adapted" in r.stdout.splitlines()

    (paths["lmstudio"] / "ro").write_text("a file where the publisher's dir would go\n")  # root ignores chmod
    line = one_line_error(run(with_lms, "export", run_dir, "-o", out, "--force", "--to", "lmstudio:ro/adapted"))
    assert f"cannot write into LM Studio's models dir {paths['lmstudio']} (" in line
    assert line.endswith(f"{out} is written: import it with `lms import {out} --copy --user-repo ro/adapted`")
    assert out.is_file() and not ran.exists()
    line = one_line_error(run(env, "export", run_dir, "-o", out, "--force", "--to", "lmstudio:ro/adapted"))
    assert line.endswith(f"{out} is written: copy it to {paths['lmstudio'] / 'ro' / 'adapted' / 'adapted.gguf'} "
                         "yourself")
