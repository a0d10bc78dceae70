// Unit tests of the Jinja interpreter: whitespace handling, each language feature, Python
// value semantics, the sandbox limits, and the chat formatter built on it. Expected strings
// were checked against Python's jinja2 3.1.6 (HF transformers' environment); the large
// cross-check is jinja_golden_test.cc.
#include <gtest/gtest.h>

#include <string>

#include "chat/chat_format.h"
#include "jinja/template.h"
#include "tqlm/error.h"

namespace tqlm::jinja {
namespace {

using json = nlohmann::ordered_json;

std::string R(std::string_view src, const json& ctx = json::object(), RenderOptions o = {}) {
  return Template(src).Render(ctx, o);
}

std::string ErrorOf(std::string_view src, const json& ctx = json::object(),
                    RenderOptions o = {}) {
  try {
    Template(src).Render(ctx, o);
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(JinjaWhitespace, TrimAndLstripBlocksLikeHf) {
  EXPECT_EQ(R("a\n  {% if true %}\n  x\n  {% endif %}\nb\n"), "a\n  x\nb");
  EXPECT_EQ(R("  {{ 1 }}  \n{# c #}\nz"), "  1  \nz");
  EXPECT_EQ(R("a {%- if 1 %} b {% endif -%} c"), "a b c");
  EXPECT_EQ(R("{% for x in [1,2] %}\n{{ x }}\n{% endfor %}"), "1\n2\n");
  EXPECT_EQ(R("  {%+ if 1 %}k{% endif %}"), "  k");
  EXPECT_EQ(R("{{- \"  x  \" -}}  |  {{ 2 }}\n"), "  x  |  2");
  EXPECT_EQ(R("{% raw %}  {{x}} {% endraw %}\nq"), "  {{x}} q");
  EXPECT_EQ(R("x\r\ny\r\n"), "x\ny");
}

TEST(JinjaExpressions, LiteralsAndOperators) {
  EXPECT_EQ(R("{{ \"\\u00e9\\x41\\101\\d\" }}"), "\xc3\xa9" "AA\\d");
  EXPECT_EQ(R("{{ 7 // 2 }} {{ -7 // 2 }} {{ -7 % 3 }} {{ 7 / 2 }} {{ 4 / 2 }} {{ 2 ** 10 }}"),
            "3 -4 2 3.5 2.0 1024");
  EXPECT_EQ(R("{{ 1e20 }} {{ 1.0 / 3 }} {{ 1e-5 }} {{ 0.1 + 0.2 }}"),
            "1e+20 0.3333333333333333 1e-05 0.30000000000000004");
  EXPECT_EQ(R("{{ 'a' ~ 1 ~ none ~ true }} {{ 'a' + 'b' }} {{ [1] + [2] }} {{ 'ab' * 2 }}"),
            "a1NoneTrue ab [1, 2] abab");
  EXPECT_EQ(R("{{ [1, 'x', none, (1,), {'k': \"it's\"}] }}"),
            "[1, 'x', None, (1,), {'k': \"it's\"}]");
  EXPECT_EQ(R("{{ 'x' if false }}|{{ 'a' if 0 else 'b' }}|{{ none or 'f' }}|{{ 0 and 1 }}"),
            "|b|f|0");
  EXPECT_EQ(R("{{ 'b' in 'abc' }} {{ 3 not in [1, 2] }} {{ 'k' in {'k': 1} }} {{ 1 == 1.0 }}"),
            "True True True True");
  EXPECT_EQ(R("{{ 'héllo'[1] }} {{ 'héllo'[::-1] }} {{ [1,2,3,4][1:3] }} {{ [1,2,3][-1] }}"),
            "é olléh [2, 3] 3");
  EXPECT_EQ(R("{{ 'abc'|length }} {{ 'héllo'|length }}"), "3 5");
}

TEST(JinjaExpressions, ErrorsAreTqlmErrors) {
  EXPECT_NE(ErrorOf("{{ 1 + 'a' }}").find("unsupported operand"), std::string::npos);
  EXPECT_NE(ErrorOf("{{ x.y }}").find("'x' is undefined"), std::string::npos);
  EXPECT_NE(ErrorOf("{{ 1 // 0 }}").find("by zero"), std::string::npos);
  EXPECT_NE(ErrorOf("{{ 9223372036854775807 + 1 }}").find("overflow"), std::string::npos);
  EXPECT_NE(ErrorOf("{{ [1]|nosuchfilter }}").find("no filter named"), std::string::npos);
  EXPECT_NE(ErrorOf("{% include 'x' %}").find("unsupported tag 'include'"), std::string::npos);
  EXPECT_NE(ErrorOf("a\n{% if %}").find("line 2"), std::string::npos);
  EXPECT_NE(ErrorOf("{{ raise_exception('boom') }}").find("boom"), std::string::npos);
  // Literals past int64 are template errors, not std::out_of_range (found by the fuzzer).
  EXPECT_NE(ErrorOf("{{ x.99999999999999999999 }}").find("bad integer literal"), std::string::npos);
  EXPECT_NE(ErrorOf("{{ 99999999999999999999 }}").find("bad integer literal"), std::string::npos);
  EXPECT_NE(ErrorOf("{{ '{99999999999999999999}'.format(1) }}").find("no value for field"),
            std::string::npos);
  EXPECT_THROW(Template("{% for x in y %}"), Error);
  EXPECT_THROW(Template("{{ 'unterminated }}"), Error);
}

TEST(JinjaStatements, LoopsScopesMacrosNamespaces) {
  EXPECT_EQ(R("{% for x in 'ab' %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}"
              "{{ loop.first }}{{ loop.last }}{{ loop.length }}{% endfor %}"),
            "102TrueFalse2" "211FalseTrue2");
  EXPECT_EQ(R("{% for x in [] %}a{% else %}empty{% endfor %}"), "empty");
  EXPECT_EQ(R("{% for x in range(6) if x is odd %}{{ x }}{{ loop.length }}{% endfor %}"),
            "133353");
  EXPECT_EQ(R("{% for x in range(9) %}{% if x == 1 %}{% continue %}{% endif %}"
              "{% if x == 4 %}{% break %}{% endif %}{{ x }}{% endfor %}"),
            "023");
  // set inside a loop does not leak; namespaces carry state out.
  EXPECT_EQ(R("{% set x = 0 %}{% set ns = namespace(n=0) %}{% for i in range(3) %}"
              "{% set x = x + 1 %}{% set ns.n = ns.n + 1 %}{{ x }}{% endfor %}{{ x }}{{ ns.n }}"),
            "11103");
  EXPECT_EQ(R("{% macro m(a, b=2) %}[{{ a }}{{ b }}{{ z }}]{% endmacro %}{% set z = 5 %}"
              "{{ m(1) }}{{ m(1, b=3) }}"),
            "[125][135]");
  EXPECT_EQ(R("{% set t %}Hi {{ 'there' }}{% endset %}{{ t|upper }}"), "HI THERE");
  EXPECT_EQ(R("{% set a, b = 1, 2 %}{{ b }}{{ a }}"), "21");
  EXPECT_EQ(R("{% filter upper %}x{{ 'y' }}{% endfilter %}"), "XY");
  EXPECT_EQ(R("{% for k, v in {'a': 1, 'b': 2}.items() %}{{ k }}{{ v }}{% endfor %}"), "a1b2");
  EXPECT_EQ(R("{% generation %}g{% endgeneration %}"), "g");
}

TEST(JinjaBuiltins, FiltersTestsMethods) {
  const json ctx = {{"msgs", json::array({{{"role", "user"}, {"content", " a "}},
                                          {{"role", "tool"}, {"content", "b"}}})}};
  EXPECT_EQ(R("{{ msgs|selectattr('role', 'equalto', 'user')|map(attribute='content')|"
              "map('trim')|join(',') }}",
              ctx),
            "a");
  EXPECT_EQ(R("{{ msgs|rejectattr('role', 'in', ['user'])|list|length }}", ctx), "1");
  EXPECT_EQ(R("{{ {'b': [1, 2.5], 'a': none}|tojson }} {{ {'a': [1]}|tojson(indent=2) }}"),
            "{\"b\": [1, 2.5], \"a\": null} {\n  \"a\": [\n    1\n  ]\n}");
  EXPECT_EQ(R("{{ 'é\"\\n'|tojson }} {{ 'é'|tojson(ensure_ascii=true) }}"),
            "\"é\\\"\\n\" \"\\u00e9\"");
  EXPECT_EQ(R("{{ x|default('d') }} {{ ''|default('e', true) }} {{ 'a-b c'|title }}"),
            "d e A-B C");
  EXPECT_EQ(R("{{ ' x '.strip() }}|{{ 'a,b'.split(',') }}|{{ 'ab'.startswith('a') }}|"
              "{{ 'x{}'.format(1) }}|{{ {'k': 1}.get('z', 2) }}|{{ '3'|int + 1 }}|"
              "{{ 2.5|round }}|{{ [3, 1, 2]|sort|first }}|{{ [1, 2]|last }}"),
            "x|['a', 'b']|True|x1|2|4|2.0|1|2");
  EXPECT_EQ(R("{{ x is defined }} {{ none is none }} {{ {} is mapping }} {{ 'a' is string }}"
              " {{ 3 is number }} {{ [] is sequence }} {{ [] is iterable }} {{ true is true }}"),
            "False True True True True True True True");
  RenderOptions o;
  o.now = 1795437296;  // 2026-11-23 12:34:56 UTC
  EXPECT_EQ(R("{{ strftime_now('%d %b %Y') }}", json::object(), o), "23 Nov 2026");
}

// The sandbox: no object internals, bounded work; every limit is a clear tqlm::Error.
TEST(JinjaSandbox, NoPythonObjectMagic) {
  EXPECT_EQ(R("{{ ''.__class__ }}|{{ {}.__init__ }}|{{ [].append }}|{{ x.pop }}",
              {{"x", json::object()}}),
            "|||");
  EXPECT_NE(ErrorOf("{{ ''.__class__.__mro__ }}").find("undefined"), std::string::npos);
  EXPECT_NE(ErrorOf("{% set ns = namespace() %}{% set l = [ns] %}").find("namespace"),
            std::string::npos);
  EXPECT_NE(ErrorOf("{% set x = 1 %}{% set x.a = 2 %}").find("non-namespace"), std::string::npos);
}

TEST(JinjaSandbox, LimitsStopHostileTemplates) {
  RenderOptions small;
  small.limits.max_steps = 200000;
  small.limits.max_loop_iterations = 10000;
  small.limits.max_output_bytes = 1 << 16;
  small.limits.max_string_bytes = 1 << 16;
  small.limits.max_call_depth = 16;
  EXPECT_NE(ErrorOf("{% for i in range(100000) %}{% endfor %}", json::object(), small).find("range() too big"),
            std::string::npos);
  EXPECT_NE(ErrorOf("{% for i in range(1000) %}{% for j in range(1000) %}{% endfor %}"
                    "{% endfor %}", json::object(), small).find("loop iteration limit"),
            std::string::npos);
  EXPECT_NE(ErrorOf("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", json::object(), small)
                .find("recursion limit"),
            std::string::npos);
  EXPECT_NE(ErrorOf("{% for i in range(5000) %}{{ 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx' }}"
                    "{% endfor %}", json::object(), small).find("output size limit"),
            std::string::npos);
  EXPECT_NE(ErrorOf("{% set ns = namespace(s='ab') %}{% for i in range(40) %}"
                    "{% set ns.s = ns.s ~ ns.s %}{% endfor %}", json::object(), small).find("size limit"),
            std::string::npos);
  EXPECT_NE(ErrorOf("{{ 'x' * 100000000000 }}", json::object(), small).find("size limit"), std::string::npos);
  EXPECT_NE(ErrorOf("{% set ns = namespace(x=1) %}{% for i in range(1000) %}"
                    "{% set ns.x = [ns.x] %}{% endfor %}{{ ns.x }}", json::object(), small).find("nesting"),
            std::string::npos);
  EXPECT_NE(ErrorOf("{{ " + std::string(5000, '(') + "1" + std::string(5000, ')') + " }}").find("nested too deeply"),
            std::string::npos);
  std::string deep_ifs;
  for (int i = 0; i < 2000; ++i) deep_ifs += "{% if 1 %}";
  EXPECT_NE(ErrorOf(deep_ifs).find("nested too deeply"), std::string::npos);
  // Long chains cannot build a tree deep enough to exhaust the stack.
  std::string chain = "{{ 1";
  for (int i = 0; i < 100000; ++i) chain += " + 1";
  EXPECT_NE(ErrorOf(chain + " }}").find("nested too deeply"), std::string::npos);
  EXPECT_NE(ErrorOf("{{ x" + std::string(50000, '|') + " }}").find("syntax error"),
            std::string::npos);
  // Shared sub-values are charged by their full size when walked.
  EXPECT_NE(ErrorOf("{% set big = range(5000)|list %}{% set huge = [big] * 5000 %}"
                    "{{ huge|length }}{{ huge == huge }}", json::object(), small).find("step limit"),
            std::string::npos);
  // Steps bound work even without output or loops over big ranges.
  EXPECT_NE(ErrorOf("{% for i in range(10000) %}{% set x = [1,2,3,4,5,6,7,8]|sort|unique|list %}"
                    "{% endfor %}", json::object(), small).find("step limit"),
            std::string::npos);
}

}  // namespace
}  // namespace tqlm::jinja

namespace tqlm::chat {
namespace {

TEST(JinjaChatFormatter, RendersModelTemplateWithToolsAndFallsBackToChatMl) {
  // Shaped like SmolLM2's template.
  const std::string smol =
      "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
      "{{ '<|im_start|>system\nYou are SmolLM.<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + "
      "message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
      "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";
  auto f = MakeChatFormatter(smol);
  EXPECT_EQ(f->name(), "jinja");
  EXPECT_EQ(f->EndOfTurn(), "<|im_end|>");
  std::vector<ChatMessage> msgs = {{"user", "Hi"}};
  ChatMlFormatter reference("You are SmolLM.");
  EXPECT_EQ(f->Format(msgs, true), reference.Format(msgs, true));
  EXPECT_EQ(MakeChatFormatter("")->name(), "chatml");
  EXPECT_THROW(MakeChatFormatter("{% if %}"), Error);

  // Tools, tool calls (arguments become an object), tool results, bos/eos.
  const std::string tmpl =
      "{{ bos_token }}{% if tools %}{{ tools|map(attribute='function.name')|join(',') }}|"
      "{% endif %}{% for m in messages %}{{ m.role }}:{{ m.content }}"
      "{% for c in m.tool_calls or [] %}<{{ c.function.name }} {{ c.function.arguments|tojson }}"
      ">{% endfor %}{% if m.tool_call_id %}#{{ m.tool_call_id }}{% endif %}{{ eos_token }}"
      "{% endfor %}";
  JinjaChatFormatter jf(tmpl, {"<s>", "</s>"});
  std::vector<ChatMessage> conv = {{"user", "w?"},
                                   {"assistant", "", {{"get_weather", "{\"city\": \"Oslo\"}", "c1"}}},
                                   {"tool", "cold", {}, "c1", "get_weather"}};
  const auto tools = nlohmann::ordered_json::parse(
      R"([{"type":"function","function":{"name":"get_weather"}}])");
  EXPECT_EQ(jf.FormatWithTools(conv, tools, false),
            "<s>get_weather|user:w?</s>assistant:<get_weather {\"city\": \"Oslo\"}></s>"
            "tool:cold#c1</s>");
  EXPECT_EQ(jf.EndOfTurn(), "</s>");
}

}  // namespace
}  // namespace tqlm::chat
