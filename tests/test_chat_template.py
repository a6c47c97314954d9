"""Chat prompts come from the model's own template, rendered in jinja2's sandbox.

The reference for "the prompt other tools build" is llama-cpp-python's own Jinja formatter, fed the
template text straight from the file; the engine must produce the same text and the same tokens.
"""

from __future__ import annotations

import llama_cpp as L
import pytest
from llama_cpp.llama_chat_format import Jinja2ChatFormatter

from edgees.engine.chat_template import DATE, compile_template
from edgees.engine.engine import Engine
from edgees.errors import EdgeesError
from edgees.gguf.reader import read_gguf
from edgees.tasks.base import get_task

CHATS = [[{"role": "user", "content": "What is 12+30? Answer with just the number."}],
         [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}],
         [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}]]


def _reference_prompt(path, engine: Engine, chat) -> str:
    meta = read_gguf(path).metadata
    fmt = Jinja2ChatFormatter(meta["tokenizer.chat_template"], bos_token=engine._special_text(engine.bos),
                              eos_token=engine._special_text(int(L.llama_vocab_eos(engine._vocab))))
    return fmt(messages=chat).prompt


def test_tiny_model_prompts_equal_llama_cpp_python(tiny_models):
    path = tiny_models["Q8_0"]
    with Engine(path, n_seq=2) as eng:
        assert eng.chat_template_source == "model (jinja, sandboxed)"
        for chat in CHATS:
            assert eng.render(chat) == _reference_prompt(path, eng, chat)


@pytest.mark.real
def test_smollm2_prompt_has_its_default_system_prompt(smollm2_path):
    """SmolLM2's template adds a system turn when there is none; llama.cpp's function drops it."""
    task = get_task("arithmetic")
    with Engine(smollm2_path, n_seq=2) as eng:
        for chat in CHATS + [task.split(n_heldout=2)[1][0].prompt]:
            text = eng.render(chat)
            msgs = [m if isinstance(m, dict) else {"role": m.role, "content": m.content} for m in chat]
            assert text == _reference_prompt(smollm2_path, eng, msgs)
        text = eng.render(CHATS[0])
        assert text.startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")
        toks = eng.prompt_tokens(CHATS[0])
        assert toks == eng.tokenize(text, add_special=False)
        assert toks[0] == eng.bos and toks[1] != eng.bos  # <|im_start|> is SmolLM2's BOS: not doubled


def test_sandbox_refuses_python_internals():
    hostile = "{{ ''.__class__.__mro__[1].__subclasses__() }}"
    assert compile_template(hostile, "<s>", "</s>") is None
    hostile_call = "{% for m in messages %}{{ m.update({'role': 'x'}) }}{% endfor %}"
    assert compile_template(hostile_call, "<s>", "</s>") is None  # immutable: no mutation of inputs


def test_template_helpers():
    t = compile_template("{{ bos_token }}{% for m in messages %}{{ m['content'] | tojson }}{% endfor %}"
                         "{{ strftime_now('%Y-%m-%d') }}", "<s>", "</s>")
    assert t.render([("user", 'say "hi"')]) == '<s>"say \\"hi\\""' + DATE.strftime("%Y-%m-%d")
    assert compile_template("{% for m in messages %}{% if m.role == 'user' %}{% break %}{% endif %}"
                            "{% endfor %}ok", "", "") is not None  # loop controls


def test_broken_template_is_not_used():
    assert compile_template("{% if %}", "", "") is None
    assert compile_template("{{ raise_exception('no') }}", "", "") is None


def test_template_rejecting_a_prompt_is_a_one_line_error(tiny_models, tmp_path):
    from edgees.gguf.tiny import make_tiny_model
    path = make_tiny_model(tmp_path / "strict.gguf", "Q8_0", seed=0,
                           chat_template="{% for m in messages %}{% if m.role == 'system' %}"
                                         "{{ raise_exception('System role not supported') }}{% endif %}"
                                         "{{ m.content }}{% endfor %}")
    with Engine(path, n_seq=2) as eng:
        assert eng.render([{"role": "user", "content": "hi"}]) == "hi"
        with pytest.raises(EdgeesError, match="System role not supported"):
            eng.render(CHATS[1])
