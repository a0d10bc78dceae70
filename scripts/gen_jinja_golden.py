#!/usr/bin/env python3
"""Golden outputs for tqlm's Jinja chat-template interpreter, rendered by Python's jinja2.

Renders every template (the chat templates of the GGUF models in ~/.cache/tqlm/models, plus the
hand-written ones in tests/data/jinja/templates/) with a set of message lists, exactly as HF
transformers' apply_chat_template does: ImmutableSandboxedEnvironment(trim_blocks=True,
lstrip_blocks=True, extensions=[loopcontrols]) with HF's tojson, raise_exception and
strftime_now (here at a fixed time, for reproducibility). Writes tests/data/jinja/<name>.json
with {template, now, cases: [{name, context, expected | error}]}; tests/jinja/jinja_golden_test.cc
requires tqlm's output to be byte-identical.

Setup (a private venv; jinja2 pinned):
  python3 -m venv ~/.cache/tqlm/venv-jinja
  ~/.cache/tqlm/venv-jinja/bin/pip install jinja2==3.1.6 gguf
  ~/.cache/tqlm/venv-jinja/bin/python scripts/gen_jinja_golden.py
"""
import datetime
import json
import os
import sys
from pathlib import Path

import jinja2
from jinja2.ext import Extension, loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

assert jinja2.__version__ == "3.1.6", jinja2.__version__

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "data" / "jinja"
MODELS = Path.home() / ".cache" / "tqlm" / "models"
# Fixed clock for strftime_now: 2026-11-23 12:34:56 UTC.
NOW = 1795437296
GGUF_MODELS = {
    "smollm2": "SmolLM2-135M-Instruct.Q4_1.gguf",
    "qwen2.5_coder": "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
    "gemma3_270m": "gemma-3-270m-it-Q4_K_M.gguf",
}


class GenerationTracker(Extension):
    """HF's AssistantTracker: {% generation %} ... {% endgeneration %} renders its body."""
    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        return jinja2.nodes.Scope(body, lineno=lineno)


def make_env():
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                          sort_keys=sort_keys)

    def strftime_now(fmt):
        return datetime.datetime.fromtimestamp(NOW, datetime.timezone.utc).strftime(fmt)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                       extensions=[GenerationTracker, loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


def gguf_template(path):
    from gguf import GGUFReader
    r = GGUFReader(str(path))

    def field_str(name):
        f = r.fields.get(name)
        if f is None:
            return None
        return bytes(f.parts[f.data[0]]).decode("utf-8")

    def token(key):
        f = r.fields.get(key)
        if f is None:
            return ""
        tid = int(f.parts[f.data[0]][0])
        toks = r.fields["tokenizer.ggml.tokens"]
        return bytes(toks.parts[toks.data[tid]]).decode("utf-8")

    return field_str("tokenizer.chat_template"), token("tokenizer.ggml.bos_token_id"), \
        token("tokenizer.ggml.eos_token_id")


WEATHER = {"type": "function", "function": {
    "name": "get_current_weather",
    "description": "Get the current weather in a given location",
    "parameters": {"type": "object", "properties": {
        "location": {"type": "string", "description": "The city and state, e.g. San Francisco, CA"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
        "required": ["location"]}}}
SEARCH = {"type": "function", "function": {
    "name": "web_search", "description": "Search the web; returns the top results.",
    "parameters": {"type": "object", "properties": {
        "query": {"type": "string"}, "max_results": {"type": "integer", "default": 5}},
        "required": ["query"]}, "return": {"type": "array"}}}


def call(name, args, cid="call12345"):
    return {"id": cid, "type": "function", "function": {"name": name, "arguments": args}}


def message_lists():
    S = {"role": "system", "content": "You are a concise assistant."}
    U = lambda t: {"role": "user", "content": t}
    A = lambda t: {"role": "assistant", "content": t}
    T = lambda t, cid="call12345", name="get_current_weather": {
        "role": "tool", "content": t, "tool_call_id": cid, "name": name}
    AC = lambda *calls: {"role": "assistant", "content": None, "tool_calls": list(calls)}
    w_paris = call("get_current_weather", {"location": "Paris, France", "unit": "celsius"})
    s_query = call("web_search", {"query": "tqlm \"quoted\" \\ path", "max_results": 3},
                   "call67890")
    L = []
    L.append(("user_only", [U("Hi")], None))
    L.append(("system_user", [S, U("Hi")], None))
    L.append(("multi_turn", [U("Hi"), A("Hello! How can I help?"), U("What is 2+2?")], None))
    L.append(("system_multi_turn", [S, U("Hi"), A("Hello."), U("Tell me a joke.")], None))
    L.append(("assistant_last", [U("Hi"), A("Hello there.")], None))
    L.append(("long_conversation", [S] + sum([[U(f"Question {i}?"), A(f"Answer {i}.")]
                                               for i in range(5)], []) + [U("Last one?")], None))
    L.append(("unicode", [U("Grüße, 世界! 😀 — naïve café"), A("¡Hola! Привет 👋"),
                          U("ünïcödé")], None))
    L.append(("special_chars", [U("Quotes ' and \" and backslash \\ and {{ braces }} {% tag %}"),
                                A("<b>html</b> & stuff"), U("tab\tnew\nline")], None))
    L.append(("whitespace_content", [U("  padded  \n"), A("\n\nleading newlines"),
                                     U("trailing   ")], None))
    L.append(("empty_content", [U(""), A(""), U("ok")], None))
    L.append(("multiline_system", [{"role": "system", "content": "Line one.\nLine two.\n\n"
                                    "- bullet"}, U("Hi")], None))
    L.append(("code_question", [U("Write a Python function:\n```python\ndef f(x):\n    "
                                  "return x * 2\n```\nExplain it.")], None))
    L.append(("tools_user", [U("What's the weather in Paris?")], [WEATHER]))
    L.append(("tools_system_user", [S, U("What's the weather in Paris?")], [WEATHER, SEARCH]))
    L.append(("tool_call", [U("Weather in Paris?"), AC(w_paris)], [WEATHER]))
    L.append(("tool_call_result", [U("Weather in Paris?"), AC(w_paris),
                                   T("{\"temperature\": 22.5, \"sky\": \"clear\"}")], [WEATHER]))
    L.append(("tool_call_result_answer", [S, U("Weather in Paris?"), AC(w_paris),
                                          T("22.5 C, clear"),
                                          A("It is 22.5 °C and clear in Paris.")], [WEATHER]))
    L.append(("tool_call_result_followup", [U("Weather in Paris?"), AC(w_paris), T("22 C"),
                                            A("22 °C."), U("And in Rome?")], [WEATHER]))
    L.append(("two_tool_calls", [U("Weather in Paris and search tqlm"), AC(w_paris, s_query),
                                 T("22 C"), T("3 results", "call67890", "web_search")],
              [WEATHER, SEARCH]))
    L.append(("tool_call_no_tools_given", [U("Weather?"), AC(w_paris), T("sunny")], None))
    L.append(("tool_args_nested", [U("Search"), AC(call("web_search", {
        "query": "x", "filters": {"lang": ["en", "de"], "since": 2020, "score": 0.75,
                                  "exact": True, "none": None}}, "abcdefghi"))],
        [SEARCH]))
    L.append(("tool_args_string", [U("Search"), AC(call("web_search",
                                                        "{\"query\": \"as text\"}", "abc123xyz"))],
              [SEARCH]))
    L.append(("system_only", [S], None))
    L.append(("no_messages", [], None))
    L.append(("user_user", [U("first"), U("second")], None))
    L.append(("tools_multi_turn", [S, U("Hi"), A("Hello."), U("Search for tqlm")],
              [WEATHER, SEARCH]))
    L.append(("tool_result_json_content", [U("Weather?"), AC(w_paris),
                                           T("{\"content\": \"nested\"}")], [WEATHER]))
    L.append(("content_parts", [{"role": "user", "content": [
        {"type": "text", "text": "Describe"}, {"type": "image"},
        {"type": "text", "text": " this "}]}], None))
    L.append(("system_parts", [{"role": "system", "content": [{"type": "text", "text": "Sys."}]},
                               U("Hi")], None))
    L.append(("long_message", [U("word " * 400)], None))
    L.append(("numbers_in_content", [U("3.14 and 1e-5 and -0")], None))
    L.append(("role_ipython", [U("Run it"), {"role": "ipython", "content": "output 42"}], None))
    L.append(("unknown_role", [{"role": "critic", "content": "Be harsher."}, U("Hi")], None))
    return L


def main():
    env = make_env()
    templates = {}
    for name, file in GGUF_MODELS.items():
        path = MODELS / file
        if not path.exists():
            print(f"skip {name}: {path} not present", file=sys.stderr)
            continue
        tmpl, bos, eos = gguf_template(path)
        if tmpl:
            templates[name] = (tmpl, bos, eos)
    for path in sorted((OUT / "templates").glob("*.jinja")):
        name = path.stem
        bos, eos = {"llama3.1_tools": ("<|begin_of_text|>", "<|eot_id|>"),
                    "mistral_tools": ("<s>", "</s>"),
                    "gemma3_style": ("<bos>", "<eos>")}.get(name, ("<s>", "</s>"))
        templates[name] = (path.read_text(encoding="utf-8"), bos, eos)
    lists = message_lists()
    for name, (tmpl, bos, eos) in templates.items():
        t = env.from_string(tmpl)
        cases = []
        counts = {"ok": 0, "error": 0}
        for case_name, messages, tools in lists:
            for agp in (True, False):
                ctx = {"messages": messages, "tools": tools, "documents": None,
                       "add_generation_prompt": agp, "bos_token": bos, "eos_token": eos}
                case = {"name": f"{case_name}/{'gen' if agp else 'nogen'}", "context": ctx}
                try:
                    case["expected"] = t.render(**ctx)
                    counts["ok"] += 1
                except Exception as e:  # raise_exception, or a type error on this input
                    case["error"] = str(e)
                    case["raised"] = isinstance(e, jinja2.exceptions.TemplateError) and \
                        not isinstance(e, jinja2.exceptions.UndefinedError)
                    counts["error"] += 1
                cases.append(case)
        if name == "llama3.1_tools":  # its extra variables
            for extra in ({"date_string": "26 Jul 2024"}, {"tools_in_user_message": False},
                          {"builtin_tools": ["brave_search", "wolfram_alpha", "code_interpreter"]}):
                for case_name, messages, tools in lists[12:20]:
                    ctx = {"messages": messages, "tools": tools, "documents": None,
                           "add_generation_prompt": True, "bos_token": bos, "eos_token": eos,
                           **extra}
                    case = {"name": f"{case_name}/{'+'.join(extra)}", "context": ctx}
                    try:
                        case["expected"] = t.render(**ctx)
                        counts["ok"] += 1
                    except Exception as e:
                        case["error"] = str(e)
                        case["raised"] = isinstance(e, jinja2.exceptions.TemplateError) and \
                            not isinstance(e, jinja2.exceptions.UndefinedError)
                        counts["error"] += 1
                    cases.append(case)
        out = OUT / f"{name}.json"
        out.write_text(json.dumps({"template": tmpl, "now": NOW, "cases": cases},
                                  ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        print(f"{name}: {len(cases)} cases ({counts['ok']} rendered, {counts['error']} "
              f"errors) -> {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
