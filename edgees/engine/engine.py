"""The evaluation engine: llama.cpp reading the live weights of a working copy.

edgees/engine/ is the only code in edgees that imports llama_cpp: llama.py (ctypes, contexts),
decode.py (the decode loops), this file (the model, its vocabulary and chat template), baseline.py
(llama-cpp-python's high-level API, the benchmark's baseline).

    engine = load_live(working_copy, tensor)    # Engine(wc.path) + check_live_weights(...)
    texts = engine.generate(prompts, max_tokens=16, stop=["\\n\\n"])    # greedy, batched
    logps = engine.score(prompts, targets)      # teacher-forced log-likelihood of each target
    ... write weight bytes ...; engine.weights_changed()

Why each load setting (llama-cpp-python 0.3.36, checked on this machine, see DESIGN.md):
- `load_mode = LLAMA_LOAD_MODE_MMAP`: the CPU weight buffer *is* a shared read-only mapping of the
  file, so bytes we write through our own MAP_SHARED mapping are what the next llama_decode reads.
  Every other load mode (read into heap, mlock, direct I/O) copies the weights at load.
- `use_extra_bufts = False`: otherwise Q4_0/Q4_K/IQ4_NL... are repacked into a CPU_REPACK copy.
- `n_gpu_layers = 0`, `lazy_mode = OFF`: no offloaded or on-demand copies either.
The load log names each weight buffer ("CPU_Mapped model buffer size = ..."); any other non-empty
buffer means some weights are copies, and the load is refused (UnsupportedModel). `check_live_weights`
then proves it end to end: a write changes the logits, restoring the bytes restores them bit for bit.

Generation (decode.py holds the decode loops): chat prompts are rendered with the model's own
chat template in jinja2's sandbox (chat_template.py; llama.cpp's template function if it does not
run there), tokenized, and decoded as parallel sequences of one context
with a unified KV cache. Every run of tokens that several prompts share (along their prefix tree:
the template and system prompt of all, a common question stem of some) is decoded once and its
cells are shared with the others (llama_memory_seq_cp: in a unified cache, no copy); each step
then decodes one token per live sequence. The context is sized to the batch: the prefix common to
all + per sequence (its prompt tail + max_tokens) cells, rounded up to 256 in total. `mem_cap_mb` bounds
the KV + logits memory of one batch; larger requests run as several batches.

Batch invariance (batched greedy == sequential greedy): llama.cpp's CPU flash attention computes a
micro-batch of >= 64 query rows with a tiled kernel and smaller ones row by row, and the two round
differently. So micro-batches hold at most UBATCH = 63 rows: every row, batched or alone, takes the
row-by-row path and sees the same cells of its own sequence in the same order (measurements and the
alternatives tried: docs/engine.md). Known limit: a one-row decode over >= 512 cells takes
llama.cpp's split-KV path, so prompts longer than ~500 tokens may differ in the last bits.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
from pathlib import Path

import numpy as np

import llama_cpp as L
from edgees.engine import decode
from edgees.engine.chat_template import compile_template
from edgees.engine.llama import _LOG, Context, _init_backend, check_mapped, set_fields, weight_buffers
from edgees.errors import EdgeesError, GGUFError, ModelNotFound, UnsupportedModel
from edgees.gguf.reader import read_gguf


# ---- the engine ------------------------------------------------------------------------------

class Engine:
    """One model loaded for evaluation from (normally) a working copy; see the module docstring.

    n_threads: compute threads (default: the CPUs this process may run on).
    n_seq: most sequences decoded together in one context (a larger request runs in batches).
    max_tokens: default generation budget when generate() is not given one.
    mem_cap_mb: bound on the context memory of one batch (KV cache + logits), which bounds the
        batch size; None = n_seq. A single sequence that does not fit raises EdgeesError.
    allow_repack: load with llama.cpp's repacking on (use_extra_bufts); only so the test can show
        that such a load is detected and refused. It never yields a usable engine for a repacked type.
    """

    def __init__(self, path, n_threads: int | None = None, n_seq: int = 32, max_tokens: int = 64,
                 mem_cap_mb: float | None = None, verbose: bool = False, allow_repack: bool = False):
        self.path = Path(path)
        self.n_threads = int(n_threads or len(os.sched_getaffinity(0)))
        self.n_seq = max(1, min(int(n_seq), L.llama_max_parallel_sequences()))
        self.max_tokens = int(max_tokens)
        self.mem_cap_mb = mem_cap_mb
        self.verbose = verbose
        self._model = None
        self.context: Context | None = None
        self._pieces: dict[int, bytes] = {}
        self._end_of_turn: int | None = None
        self.last_stats: dict = {}
        if not self.path.is_file():
            raise ModelNotFound(f"no such model file: {self.path}")
        read_gguf(self.path)  # strict check first: llama.cpp's loader is not hardened against bad files
        self._load(allow_repack)

    # ---- load ---------------------------------------------------------------------------------
    def _load(self, allow_repack: bool) -> None:
        _init_backend()
        _LOG.verbose = self.verbose
        params = L.llama_model_default_params()
        set_fields(params, n_gpu_layers=0, load_mode=L.LLAMA_LOAD_MODE_MMAP,
                   lazy_mode=L.LLAMA_LAZY_MODE_OFF, use_extra_bufts=bool(allow_repack),
                   vocab_only=False, check_tensors=False, no_host=False, no_alloc=False)
        _LOG.capture = []
        try:
            self._model = L.llama_model_load_from_file(str(self.path).encode(), params)
            log = "".join(_LOG.capture)
        finally:
            _LOG.capture = None
        if not self._model:
            reason = [ln for ln in log.splitlines() if "error" in ln.lower() or "failed" in ln.lower()]
            hint = reason[-1].strip() if reason else "see `--verbose` for llama.cpp's log"
            raise GGUFError(f"{self.path}: llama.cpp cannot load this model ({hint})")
        try:
            self.weight_buffers = weight_buffers(log)
            check_mapped(self.path, self.weight_buffers)
            self._vocab = L.llama_model_get_vocab(self._model)
            self.n_vocab = int(L.llama_vocab_n_tokens(self._vocab))
            self.bos = int(L.llama_vocab_bos(self._vocab))
            self._init_template()
            self._kv_bytes_per_cell = self._kv_bytes()
            self.context = Context(self._model, self.n_threads)
        except BaseException:
            self.close()
            raise

    def _meta(self, key: str) -> str | None:
        buf = ctypes.create_string_buffer(256)
        n = L.llama_model_meta_val_str(self._model, key.encode(), buf, len(buf))
        return buf.value.decode("utf-8", "replace") if n >= 0 else None

    def _kv_bytes(self) -> int:
        """Bytes of KV cache per context cell (f16 K and V over all layers)."""
        arch = self._meta("general.architecture") or ""
        n_head = max(1, L.llama_model_n_head(self._model))
        head = L.llama_model_n_embd(self._model) // n_head
        k = int(self._meta(f"{arch}.attention.key_length") or head)
        v = int(self._meta(f"{arch}.attention.value_length") or head)
        return 2 * L.llama_model_n_layer(self._model) * L.llama_model_n_head_kv(self._model) * (k + v)

    def _init_template(self) -> None:
        """How chat prompts are rendered. A model with a chat template: the template itself, run in
        jinja2's sandbox (chat_template.py), so prompts are the ones Ollama or llama-cpp-python
        build; if it does not run there, llama_chat_apply_template, which recognises well-known
        templates without running them. A base model without one: llama.cpp's built-in template for
        its family if there is one (gemma), else chatml."""
        self._jinja = None
        tmpl = L.llama_model_chat_template(self._model, None)
        if tmpl:
            self.chat_template, self.chat_template_source = tmpl, "model"
            self._jinja = compile_template(tmpl.decode("utf-8", "replace"), self._special_text(self.bos),
                                           self._special_text(int(L.llama_vocab_eos(self._vocab))))
            self.chat_template_source = "model (jinja, sandboxed)" if self._jinja else "model (llama.cpp)"
            return
        arch = (self._meta("general.architecture") or "").lower()
        n = L.llama_chat_builtin_templates(None, 0)
        names_p = (ctypes.c_char_p * n)()
        L.llama_chat_builtin_templates(names_p, n)
        builtin = [names_p[i].decode() for i in range(n)]
        family = next((b for b in sorted(builtin, key=len, reverse=True) if arch.startswith(b)), None)
        self.chat_template = (family or "chatml").encode()
        self.chat_template_source = f"built-in {self.chat_template.decode()} (model has no template)"

    def _special_text(self, token: int) -> str:
        """The text of a special token as a template writes it ("<bos>"), or "" if there is none."""
        if token < 0:
            return ""
        buf = ctypes.create_string_buffer(256)
        n = L.llama_token_to_piece(self._vocab, token, buf, len(buf), 0, True)
        return buf.raw[:max(n, 0)].decode("utf-8", "replace")

    # ---- context ------------------------------------------------------------------------------
    def batch_size_for(self, cells_per_seq: int) -> int:
        """Sequences per batch: n_seq, or fewer if mem_cap_mb would be exceeded (KV + logits;
        cells_per_seq = longest prompt + max tokens, not counting the shared prefix once)."""
        if self.mem_cap_mb is None:
            return self.n_seq
        per_seq = cells_per_seq * self._kv_bytes_per_cell + 4 * self.n_vocab
        fit = int(self.mem_cap_mb * 2**20 // per_seq)
        if fit < 1:
            raise EdgeesError(f"one sequence needs {per_seq / 2**20:.1f} MiB of context, more than the "
                              f"memory cap of {self.mem_cap_mb} MiB: raise the cap or lower max tokens")
        return min(self.n_seq, fit)

    # ---- text <-> tokens ----------------------------------------------------------------------
    def render(self, prompt, add_generation_prompt: bool = True) -> str:
        """A prompt as text: a str is used as is; chat messages go through the chat template
        (ending with the assistant turn's opening unless add_generation_prompt is False)."""
        if isinstance(prompt, str):
            return prompt
        msgs = [(m["role"], m["content"]) if isinstance(m, dict) else (m.role, m.content)
                for m in prompt]
        if self._jinja is not None:
            try:
                return self._jinja.render(msgs, add_generation_prompt)
            except Exception as e:  # the template rejected these messages (raise_exception)
                raise EdgeesError(f"{self.path.name}: the chat template rejects this prompt: {e}") from None
        return self._render_builtin(msgs, add_generation_prompt)

    def _render_builtin(self, msgs, add_generation_prompt: bool) -> str:
        keep = [(r.encode(), c.encode()) for r, c in msgs]
        chat = (L.llama_chat_message * len(keep))(*[L.llama_chat_message(r, c) for r, c in keep])
        size = 2 * sum(len(r) + len(c) for r, c in keep) + 512
        for _ in range(2):
            buf = ctypes.create_string_buffer(size)
            n = L.llama_chat_apply_template(self.chat_template, chat, len(keep), add_generation_prompt,
                                            buf, size)
            if n < 0:
                raise UnsupportedModel(f"{self.path.name}: llama.cpp does not recognise this model's "
                                       "chat template; give raw-text prompts (a task with chat=False)")
            if n <= size:
                return buf.raw[:n].decode("utf-8", "replace")
            size = n + 1
        raise RuntimeError("llama_chat_apply_template kept growing")

    def tokenize(self, text: str, add_special: bool = True, parse_special: bool = True) -> list[int]:
        data = text.encode("utf-8")
        cap = len(data) + 16
        for _ in range(2):
            buf = (L.llama_token * cap)()
            n = L.llama_tokenize(self._vocab, data, len(data), buf, cap, add_special, parse_special)
            if n >= 0:
                toks = list(buf[:n])
                if len(toks) >= 2 and toks[0] == toks[1] == self.bos:
                    toks = toks[1:]  # the template wrote a BOS and the tokenizer added another
                return toks
            cap = -n
        raise RuntimeError("llama_tokenize kept growing")

    def prompt_tokens(self, prompt) -> list[int]:
        # a Jinja-rendered chat prompt holds its own special tokens (BOS included when the template
        # wants one), as in transformers and llama-cpp-python; anything else gets the vocab's BOS
        templated = self._jinja is not None and not isinstance(prompt, str)
        toks = self.tokenize(self.render(prompt), add_special=not templated)
        if not toks:
            raise EdgeesError("a prompt tokenized to nothing; give non-empty prompts")
        return toks

    def piece(self, token: int) -> bytes:
        """The bytes of one token as generated text (special tokens render as nothing)."""
        p = self._pieces.get(token)
        if p is None:
            buf = ctypes.create_string_buffer(64)
            n = L.llama_token_to_piece(self._vocab, token, buf, 64, 0, False)
            if n < 0:
                buf = ctypes.create_string_buffer(-n)
                n = L.llama_token_to_piece(self._vocab, token, buf, -n, 0, False)
            p = self._pieces[token] = buf.raw[:n]
        return p

    def is_eog(self, token: int) -> bool:
        return bool(L.llama_vocab_is_eog(self._vocab, token))

    def end_of_turn(self) -> int:
        """The token that ends an assistant answer, as the chat template writes it (SmolLM2
        <|im_end|>, gemma <end_of_turn>): the first token after an assistant message's content,
        if it ends generation; else the vocabulary's EOS. What score(..., end_turn=True) appends."""
        if self._end_of_turn is None:
            token = int(L.llama_vocab_eos(self._vocab))
            mark = "EDGEES_ANSWER_MARK"
            try:
                text = self.render([{"role": "user", "content": "ping"},
                                    {"role": "assistant", "content": mark}], add_generation_prompt=False)
                after = text[text.index(mark) + len(mark):]
                toks = self.tokenize(after, add_special=False) if after else []
                if toks and self.is_eog(toks[0]):
                    token = toks[0]
            except (EdgeesError, ValueError):
                pass  # a template that cannot render an answer: the EOS it declares
            self._end_of_turn = token
        return self._end_of_turn

    # ---- evaluation ---------------------------------------------------------------------------
    def generate(self, prompts, max_tokens: int | None = None, stop=None) -> list[str]:
        """Greedy completions of each prompt, all decoded together (see the module docstring).

        A completion ends at an end-of-generation token, at the first stop string (cut there, the
        stop string excluded), or after max_tokens tokens.
        """
        out, self.last_stats = decode.generate(self, list(prompts),
                                               self.max_tokens if max_tokens is None else int(max_tokens),
                                               [s for s in (stop or []) if s])
        return out

    def score(self, prompts, targets, end_turn: bool = False, margin: float | None = None) -> list[float]:
        """Teacher-forced log-likelihood (natural log, summed over tokens) of each target after its
        prompt; the target is tokenized on its own, without special tokens. end_turn=True also
        scores the end-of-turn token after it (end_of_turn()): the answer and nothing more.
        margin=CAP scores each target token by its logit's lead over the best other token, capped at
        CAP, instead of its log-probability: positive exactly where greedy decoding would write it."""
        out, self.last_stats = decode.score(self, list(prompts), list(targets),
                                            self.end_of_turn() if end_turn else None, margin)
        return out

    def logits(self, prompt) -> np.ndarray:
        """(n_vocab,) float32 logits after the prompt's last token, from an empty KV memory."""
        return decode.last_logits(self, self.prompt_tokens(prompt))

    def time_decode(self, tokens: list[int]) -> float:
        """Seconds of one llama_decode of `tokens` as one sequence from empty memory (no logits
        but the last): the compute ceiling of this model on this machine, for benchmarks."""
        return decode.time_decode(self, list(tokens))

    def synchronize(self) -> None:
        """Wait for llama.cpp to finish reading weights: call before writing weight bytes."""
        if self.context is not None:
            self.context.synchronize()

    @property
    def abort_flags(self) -> np.ndarray:
        return self.context.abort_flags

    def abort(self, requested: bool = True) -> None:
        """Ask (from any thread) that decoding stop at the next graph node while abortable() work
        runs: llama_decode then raises EngineAborted. abort(False) withdraws the request."""
        self.abort_flags[0] = 1 if requested else 0

    @contextlib.contextmanager
    def abortable(self):
        """Work inside may be aborted by abort(); work outside never is (a held-out evaluation)."""
        self.abort_flags[1] = 1
        try:
            yield
        finally:
            self.abort_flags[1] = 0

    def weights_changed(self) -> None:
        """Call after every write to the weight bytes: no KV computed with the old weights survives."""
        if self.context is not None:
            self.context.synchronize()
            self.context.clear()

    def close(self) -> None:
        if self.context is not None:
            self.context.free()
            self.context = None
        if self._model:
            L.llama_model_free(self._model)
            self._model = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


# ---- the end-to-end check --------------------------------------------------------------------

def load_live(working_copy, tensor: str | None, **engine_kwargs) -> Engine:
    """An Engine over a WorkingCopy, proven to read its live bytes (check_live_weights on `tensor`,
    normally the first one training will write; None: only the weight buffers are checked). The
    usual way to get an engine."""
    engine = Engine(working_copy.path, **engine_kwargs)
    try:
        if tensor is not None:
            check_live_weights(engine, working_copy.view, tensor)
    except BaseException:
        engine.close()
        raise
    return engine


LIVE_CHECK_PROMPT = "The quick brown fox jumps over the lazy dog. One, two, three,"
LIVE_CHECK_TENSORS = ("blk.0.attn_q.weight", "blk.0.ffn_up.weight", "blk.0.attn_output.weight")


def check_live_weights(engine: Engine, view, tensor: str | None = None) -> None:
    """Prove that the engine reads the bytes `view(name)` exposes (a writable uint8 array aliasing
    the file llama.cpp mapped): a write must change the logits of a fixed prompt and restoring the
    bytes must give them back bit for bit. Raises UnsupportedModel otherwise. Leaves the bytes as
    they were, and the engine's KV memory cleared."""
    names = [tensor] if tensor else list(LIVE_CHECK_TENSORS)
    weights = None
    for name in names:
        try:
            weights = view(name)
            break
        except (KeyError, EdgeesError):
            continue
    if weights is None:
        raise UnsupportedModel(f"{engine.path.name}: none of the tensors {', '.join(names)} is in it, so "
                               "edgees cannot check that llama.cpp reads the live weights; name a "
                               "tensor to check (see `edgees info`)")
    engine.weights_changed()
    before = engine.logits(LIVE_CHECK_PROMPT)
    saved = np.array(weights, copy=True)
    try:
        engine.synchronize()
        np.bitwise_xor(weights, np.uint8(0x11), out=weights)  # every code and scale byte moves
        engine.weights_changed()
        perturbed = engine.logits(LIVE_CHECK_PROMPT)
    finally:
        engine.synchronize()
        weights[:] = saved
        engine.weights_changed()
    restored = engine.logits(LIVE_CHECK_PROMPT)
    engine.weights_changed()
    if perturbed.tobytes() == before.tobytes():
        raise UnsupportedModel(f"{engine.path.name}: writing {name} did not change llama.cpp's logits: "
                               "it does not read the working copy's bytes, so perturbations would be "
                               "invisible; load with mmap on and repacking off")
    if restored.tobytes() != before.tobytes():
        raise UnsupportedModel(f"{engine.path.name}: restoring {name} did not restore the logits bit "
                               "for bit: llama.cpp's view of the weights is not the working copy's bytes")
