"""A model's own Jinja chat template, rendered in a sandbox: the prompt Ollama, LM Studio,
llama-cpp-python and transformers build for the same messages.

llama.cpp's llama_chat_apply_template only recognises well-known templates and re-implements them,
so details such as SmolLM2's default system prompt are lost. Here the template text from the GGUF
runs in jinja2's ImmutableSandboxedEnvironment (no attribute access to Python internals, no
mutation of passed objects), with the conventions chat templates are written for: trim_blocks and
lstrip_blocks, the loop-controls extension, `raise_exception`, `tojson`, and `strftime_now`.
`strftime_now` renders a fixed date (DATE) so a prompt, and every reward computed from it, is the
same on every day. A template that does not compile or render in the sandbox is not used: the
engine then falls back to llama_chat_apply_template.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Sequence

DATE = datetime(2025, 1, 1)


class TemplateError(ValueError):
    pass


def _raise(message: str):
    raise TemplateError(message)


def _tojson(x, ensure_ascii: bool = False, indent=None, separators=None, sort_keys: bool = False) -> str:
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


class JinjaTemplate:
    """A compiled chat template; render() turns (role, content) pairs into the prompt text."""

    def __init__(self, source: str, bos_token: str, eos_token: str):
        import jinja2
        import jinja2.ext
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        env = ImmutableSandboxedEnvironment(loader=jinja2.BaseLoader(), trim_blocks=True, lstrip_blocks=True,
                                            extensions=[jinja2.ext.loopcontrols])
        env.filters["tojson"] = _tojson
        env.globals.update(raise_exception=_raise, strftime_now=DATE.strftime)
        self._template = env.from_string(source)
        self.bos_token, self.eos_token = bos_token, eos_token

    def render(self, messages: Sequence[tuple[str, str]], add_generation_prompt: bool = True) -> str:
        return self._template.render(messages=[{"role": r, "content": c} for r, c in messages],
                                     add_generation_prompt=add_generation_prompt, bos_token=self.bos_token,
                                     eos_token=self.eos_token)


def compile_template(source: str, bos_token: str, eos_token: str) -> JinjaTemplate | None:
    """The template if it compiles and renders a one-message chat in the sandbox, else None."""
    try:
        t = JinjaTemplate(source, bos_token, eos_token)
        t.render([("user", "ping")])
        return t
    except Exception:  # any failure of a file's template means: do not use it
        return None
