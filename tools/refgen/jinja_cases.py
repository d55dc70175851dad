#!/usr/bin/env python3
"""Reference outputs of jinja2, configured as transformers configures it, for pkg/chat/jinja.

Each case is a small template plus variables exercising one piece of the Jinja/Python semantics
chat templates rely on (whitespace control, scoping, str()/repr of values, string methods,
filters, tests, slicing, the immutable sandbox, tojson). The Go tests render the same cases and
compare. Needs only Python 3 and jinja2 (a transformers dependency):

    python3 tools/refgen/jinja_cases.py > testdata/chat/jinja_cases.jsonl
"""
import json
import sys

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

CASES = [
    # whitespace control
    ("trim_lstrip", "  {% if true %}\n  x\n  {% endif %}\ny", {}),
    ("lstrip_not_after_text", "a  {% if true %}\nX\n  {% endif %}  \nb", {}),
    ("minus_modifiers", "a \n {%- if true -%} \n b \n {%- endif -%} \n c", {}),
    ("plus_modifiers", "a\n\t {%+ if true %}\nX{% endif %}\nb\n{% if true +%}\nY{% endif %}", {}),
    ("comments", "a\n  {# comment #}\nb{#- x -#}  c", {}),
    ("var_tags_no_trim", "a\n  {{ 1 }}\nb {{- 2 -}} c", {}),
    ("trailing_newline_dropped", "x\n", {}),
    ("crlf_normalised", "a\r\nb\rc", {}),
    ("raw_block", "{% raw %}{{ not evaluated }}{% endraw %}", {}),
    ("line_start_after_var", "{{ 'a' }}  {% if true %}b{% endif %}", {}),
    # values as str()
    ("print_values", "{{ none }}|{{ true }}|{{ 1.0 }}|{{ 1e20 }}|{{ 1.5e-7 }}|{{ 0.1 + 0.2 }}|{{ 10/4 }}|{{ 7//2 }}|{{ -7 // 2 }}|{{ -7 % 3 }}|{{ 2 ** 10 }}", {}),
    ("print_containers", "{{ [1, 'a', none, true, 2.5] }}|{{ {'k': 'v', 'n': [1]} }}|{{ (1,) }}|{{ ('a', 'b') }}|{{ [] }}|{{ {} }}", {}),
    ("print_quotes", "{{ [\"it's\", 'say \"hi\"', 'both \\' \"', 'tab\\t', 'nl\\n', '\\u00e9', '\\x01'] }}", {}),
    ("print_undefined", "[{{ missing }}][{{ missing ~ 'x' }}]", {}),
    ("print_dict_var", "{{ d }}", {"d": {"b": 1, "a": [True, None, 1.5, "x"]}}),
    ("print_nested_float", "{{ [1.0, 100.0, 1e16, 1.5e16, 0.0001, 0.00001, -0.0] }}", {}),
    # operators
    ("concat_and_add", "{{ 'a' + 'b' }}{{ 'n' ~ 1 ~ none ~ true }}{{ [1] + [2] }}", {}),
    ("add_str_int_error", "{{ 'a' + 1 }}", {}),
    ("add_undefined_error", "{{ 'a' + missing }}", {}),
    ("compare_chain", "{{ 1 < 2 < 3 }} {{ 1 < 3 < 2 }} {{ 'a' < 'b' }} {{ [1, 2] < [1, 3] }}", {}),
    ("equality", "{{ 1 == 1.0 }} {{ true == 1 }} {{ 'a' == 'a' }} {{ none == none }} {{ [1] == [1] }} {{ {'a': 1} == {'a': 1} }} {{ missing == missing }} {{ missing == none }}", {}),
    ("in_operator", "{{ 'b' in 'abc' }} {{ 2 in [1, 2] }} {{ 'k' in {'k': 1} }} {{ 'x' not in 'abc' }} {{ 'x' in missing }}", {}),
    ("in_none_error", "{{ 'x' in none }}", {}),
    ("and_or_values", "{{ 0 or 'x' }}|{{ 'a' and 'b' }}|{{ '' and 'b' }}|{{ none or none }}|{{ not [] }}", {}),
    ("conditional_expr", "{{ 'y' if true else 'n' }}{{ 'y' if false else 'n' }}[{{ 'y' if false }}]", {}),
    ("unary", "{{ -3 }} {{ -(2 + 1) }} {{ +4 }} {{ not true }}", {}),
    ("string_repeat", "{{ 'ab' * 3 }}{{ 2 * 'c' }}", {}),
    ("precedence", "{{ 1 + 2 * 3 }} {{ (1 + 2) * 3 }} {{ 2 ** 3 ** 2 }} {{ 'a' ~ (1 + 2) }} {{ [1,2,3] | length > 2 }} {{ not 1 == 2 }}", {}),
    ("concat_binds_tighter_than_plus", "{{ 'a' ~ 1 + 2 }}", {}),
    # scoping
    ("for_scope", "{% set x = 1 %}{% for i in [1, 2] %}{% set x = i %}{% endfor %}{{ x }}", {}),
    ("if_scope", "{% if true %}{% set y = 5 %}{% endif %}{{ y }}", {}),
    ("namespace", "{% set ns = namespace(n=0, s='') %}{% for i in range(3) %}{% set ns.n = ns.n + i %}{% set ns.s = ns.s ~ i %}{% endfor %}{{ ns.n }} {{ ns.s }}", {}),
    ("loop_vars", "{% for x in ['a', 'b', 'c'] %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.revindex0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }}|{% endfor %}", {}),
    ("loop_prev_next", "{% for x in [1, 2, 3] %}[{{ loop.previtem }},{{ loop.nextitem }}]{% endfor %}", {}),
    ("loop_cycle", "{% for x in range(4) %}{{ loop.cycle('a', 'b') }}{% endfor %}", {}),
    ("loop_else", "{% for x in [] %}x{% else %}empty{% endfor %}", {}),
    ("loop_filter", "{% for x in range(10) if x is even %}{{ x }}{{ loop.index }},{% endfor %}", {}),
    ("loop_unpack", "{% for k, v in {'a': 1, 'b': 2}.items() %}{{ k }}={{ v }};{% endfor %}{% for a, b in [[1, 2], [3, 4]] %}{{ a + b }}{% endfor %}", {}),
    ("loop_break_continue", "{% for i in range(10) %}{% if i == 2 %}{% continue %}{% endif %}{% if i == 5 %}{% break %}{% endif %}{{ i }}{% endfor %}", {}),
    ("loop_over_string_and_dict", "{% for c in 'ab' %}{{ c }},{% endfor %}{% for k in {'x': 1, 'y': 2} %}{{ k }}{% endfor %}", {}),
    ("loop_over_undefined", "{% for x in missing %}x{% endfor %}ok", {}),
    ("nested_loops", "{% for i in [1, 2] %}{% for j in [3, 4] %}{{ loop.index }}{{ i }}{{ j }} {% endfor %}{{ loop.index }}|{% endfor %}", {}),
    ("set_block", "{% set x %}a{{ 1 + 1 }}b{% endset %}[{{ x }}]", {}),
    ("set_tuple", "{% set a, b = 1, 2 %}{{ a }}{{ b }}", {}),
    # macros
    ("macro_defaults_kwargs", "{% macro f(a, b=2, c='x') %}{{ a }}{{ b }}{{ c }}{% endmacro %}{{ f(1) }}|{{ f(1, 3) }}|{{ f(1, c='z') }}", {}),
    ("macro_recursion", "{% macro fact(n) %}{% if n <= 1 %}1{% else %}{{ n * fact(n - 1) | int }}{% endif %}{% endmacro %}{{ fact(5) }}", {}),
    ("macro_sees_globals", "{% macro f() %}{{ g }}{% endmacro %}{% set g = 'late' %}{{ f() }}", {}),
    ("macro_local_set", "{% set v = 'outer' %}{% macro f() %}{% set v = 'inner' %}{{ v }}{% endmacro %}{{ f() }}{{ v }}", {}),
    ("macro_too_many_args", "{% macro f(a) %}{{ a }}{% endmacro %}{{ f(1, 2) }}", {}),
    ("macro_missing_arg", "{% macro f(a, b) %}[{{ a }}][{{ b }}]{% endmacro %}{{ f(1) }}", {}),
    ("macro_output_trimmed", "{%- macro f(x) -%}\n  v={{ x }}\n{%- endmacro -%}\n[{{ f(1) }}]", {}),
    # attribute and item access
    ("dict_access", "{{ d.a }}{{ d['a'] }}{{ d.missing }}|{{ d.get('a') }}{{ d.get('zz', 'def') }}|{{ d.items() | list }}|{{ d.keys() | list }}{{ d.values() | list }}", {"d": {"a": 1, "items": "shadowed"}}),
    ("dict_item_named_like_method", "{{ d['items'] }}|{{ d.items | default('x') is defined }}", {"d": {"items": [1]}}),
    ("list_access", "{{ l[0] }}{{ l[-1] }}[{{ l[10] }}]{{ l[1:] }}{{ l[::-1] }}{{ l[::2] }}{{ l[-2:] }}{{ l[5:9] }}", {"l": [1, 2, 3, 4]}),
    ("string_access", "{{ s[0] }}{{ s[-1] }}{{ s[1:3] }}{{ s[::-1] }}{{ s | length }}", {"s": "héllo🌍"}),
    ("undefined_attr_error", "{{ missing.attr }}", {}),
    ("none_attr_undefined", "[{{ n.attr }}][{{ n['x'] }}]", {"n": None}),
    ("attr_on_undefined_item", "{{ d.a.b }}", {"d": {}}),
    # string methods
    ("str_methods_1", "{{ s.startswith('He') }}{{ s.endswith(('x', 'd!')) }}{{ s.upper() }}{{ s.lower() }}{{ s.title() }}{{ 'hello world'.capitalize() }}", {"s": "Hello World!"}),
    ("str_strip", "[{{ '  a b  '.strip() }}][{{ 'xxaxx'.strip('x') }}][{{ '\\n\\na\\n'.lstrip('\\n') }}][{{ 'a\\n\\n'.rstrip('\\n') }}][{{ ' \\t a'.lstrip() }}]", {}),
    ("str_split", "{{ 'a,b,,c'.split(',') }}{{ '  a  b c '.split() }}{{ 'a b c'.split(' ', 1) }}{{ 'a-b-c'.rsplit('-', 1) }}{{ ''.split() }}{{ ''.split(',') }}", {}),
    ("str_split_think", "{% set c = '<think>\\nR\\n</think>\\n\\nA' %}[{{ c.split('</think>')[0].rstrip('\\n').split('<think>')[-1].lstrip('\\n') }}][{{ c.split('</think>')[-1].lstrip('\\n') }}]", {}),
    ("str_find_replace", "{{ 'abcabc'.find('c') }}{{ 'abc'.find('z') }}{{ 'abcabc'.rfind('b') }}{{ 'abcabc'.count('b') }}{{ 'aaa'.replace('a', 'b', 2) }}{{ 'x'.join(['1', '2', '3']) }}", {}),
    ("str_predicates", "{{ '123'.isdigit() }}{{ 'ab'.isalpha() }}{{ ' '.isspace() }}{{ 'AB'.isupper() }}{{ 'ab'.islower() }}{{ ''.isdigit() }}", {}),
    ("str_splitlines", "{{ 'a\\nb\\r\\nc'.splitlines() }}", {}),
    # filters
    ("filter_length_count", "{{ [1, 2] | length }}{{ 'abc' | count }}{{ {'a': 1} | length }}{{ missing | length }}", {}),
    ("filter_tojson", "{{ d | tojson }}|{{ d | tojson(indent=2) }}|{{ 'é\"<>&' | tojson }}|{{ [1.0, 2, none, true] | tojson }}", {"d": {"name": "x", "nested": {"list": [1, 2.5, "ü"], "empty": {}, "e": []}}}),
    ("filter_tojson_options", "{{ d | tojson(ensure_ascii=True) }}|{{ d | tojson(separators=(',', ':')) }}|{{ d | tojson(sort_keys=true) }}|{{ d | tojson(indent='\\t') }}", {"d": {"b": "é😀", "a": [1, {"c": None}]}}),
    ("filter_tojson_undefined_error", "{{ missing | tojson }}", {}),
    ("filter_trim_upper_lower", "[{{ '  x  ' | trim }}][{{ 'xxaxx' | trim('x') }}]{{ 'Ab' | upper }}{{ 'Ab' | lower }}{{ 'hello-world foo' | title }}{{ 'hELLO' | capitalize }}", {}),
    ("filter_join_default", "{{ [1, 2, 3] | join(', ') }}|{{ missing | default('d') }}|{{ '' | default('d') }}|{{ '' | default('d', true) }}|{{ none | default('d') }}|{{ missing | d('x') }}", {}),
    ("filter_first_last_list", "{{ [1, 2, 3] | first }}{{ [1, 2, 3] | last }}{{ 'abc' | list }}{{ [] | first is defined }}", {}),
    ("filter_items_dictsort", "{{ d | items | list }}|{{ d | dictsort }}|{{ d | dictsort(reverse=true) }}|{{ d | dictsort(by='value') }}|{{ missing | items | list }}", {"d": {"b": 2, "A": 3, "a": 1}}),
    ("filter_string_int_float", "{{ 12 | string }}{{ '12' | int + 1 }}{{ 'x' | int }}{{ '3.7' | int }}{{ 3.9 | int }}{{ '2.5' | float }}{{ 'x' | float }}{{ true | int }}", {}),
    ("filter_abs_round", "{{ -3 | abs }}{{ -2.5 | abs }}{{ 2.567 | round(2) }}{{ 2.5 | round }}{{ 2.1 | round(0, 'ceil') }}", {}),
    ("filter_replace", "{{ 'a-b-c' | replace('-', '+') }}{{ 'aaa' | replace('a', 'b', 1) }}", {}),
    ("filter_map_select", "{{ ['a', 'b'] | map('upper') | list }}{{ users | map(attribute='name') | join(',') }}{{ [1, 2, 3, 4] | select('even') | list }}{{ [1, 2, 3, 4] | reject('even') | list }}{{ users | selectattr('admin') | map(attribute='name') | list }}{{ users | rejectattr('admin') | list | length }}{{ [0, 1, '', 'x'] | select | list }}", {"users": [{"name": "ann", "admin": True}, {"name": "bob", "admin": False}]}),
    ("filter_selectattr_test", "{{ users | selectattr('name', 'equalto', 'bob') | list | length }}{{ users | selectattr('age', 'defined') | list | length }}", {"users": [{"name": "ann", "age": 3}, {"name": "bob"}]}),
    ("filter_sort_unique_reverse", "{{ [3, 1, 2] | sort }}{{ ['b', 'A', 'a'] | sort }}{{ ['b', 'A', 'a'] | sort(case_sensitive=true) }}{{ [3, 1, 2] | sort(reverse=true) }}{{ ['a', 'A', 'b'] | unique | list }}{{ [1, 2] | reverse | list }}{{ 'abc' | reverse }}", {}),
    ("filter_min_max_sum", "{{ [3, 1, 2] | min }}{{ [3, 1, 2] | max }}{{ [1, 2, 3] | sum }}{{ users | sum(attribute='n') }}", {"users": [{"n": 1}, {"n": 2.5}]}),
    ("filter_indent", "{{ 'a\\nb\\n\\nc' | indent(2) }}|{{ 'a\\nb' | indent(2, true) }}|{{ 'a\\n\\nb' | indent(2, blank=true) }}", {}),
    ("filter_safe_escape", "{{ '<a>' | safe }}{{ '<a & \"b\">' | e }}", {}),
    ("filter_block", "{% filter upper %}abc{{ 'd' }}{% endfilter %}", {}),
    ("filter_chain_precedence", "{{ '// default: ' + d | tojson }}|{{ -1 | abs }}|{{ ('a' ~ 'b') | upper }}", {"d": 10}),
    # tests
    ("tests_types", "{{ 'a' is string }}{{ 1 is number }}{{ 1.5 is number }}{{ true is number }}{{ true is boolean }}{{ 1 is integer }}{{ true is integer }}{{ 1.0 is float }}{{ {} is mapping }}{{ [] is mapping }}{{ none is none }}{{ missing is defined }}{{ missing is undefined }}", {}),
    ("tests_iterable_sequence", "{{ 'a' is iterable }}{{ [] is iterable }}{{ {} is iterable }}{{ 1 is iterable }}{{ missing is iterable }}{{ [] is sequence }}{{ 'a' is sequence }}{{ 1 is sequence }}{{ none is iterable }}", {}),
    ("tests_values", "{{ true is true }}{{ 1 is true }}{{ false is false }}{{ 2 is even }}{{ 3 is odd }}{{ 9 is divisibleby 3 }}{{ 9 is divisibleby(2) }}{{ 1 is eq 1 }}{{ 1 is ne 2 }}{{ 2 is gt 1 }}{{ 'a' is in 'abc' }}{{ 'ab' is lower }}{{ 'AB' is upper }}{{ f is callable }}", {"f": None}),
    ("tests_negated", "{{ 'a' is not string }}{{ missing is not defined }}{{ none is not none }}", {}),
    ("tests_sameas", "{{ none is sameas none }}{{ true is sameas true }}{{ 1 is sameas true }}", {}),
    # globals
    ("range", "{{ range(3) | list }}{{ range(1, 4) | list }}{{ range(10, 0, -3) | list }}{{ range(0) | list }}", {}),
    ("dict_global", "{{ dict(a=1, b='x') }}{{ dict({'z': 0}, y=1) }}", {}),
    ("raise_exception", "a{{ raise_exception('Bad role: ' ~ role) }}", {"role": "x"}),
    ("strftime", "{{ strftime_now('%Y-%m-%d %H:%M:%S %d %B %b %A %a %j %y %I %p %%') }}", {}),
    # sandbox
    ("sandbox_list_append", "{% set l = [] %}{% set _ = l.append(1) %}{{ l }}", {}),
    ("sandbox_dict_update", "{% set d = {} %}{{ d.update({'a': 1}) }}", {}),
    ("sandbox_unsafe_unused", "{% set l = [1] %}{% set f = l.append %}ok", {}),
    ("list_index_count", "{{ [1, 2, 2].index(2) }}{{ [1, 2, 2].count(2) }}", {}),
    # literals
    ("string_literals", "{{ 'a\\tb' }}|{{ \"q\\\"q\" }}|{{ 'u\\u00e9\\U0001F600' }}|{{ 'x' 'y' }}|{{ '\\\\n' }}", {}),
    ("numbers_literals", "{{ 1_000 }} {{ 1.5e3 }} {{ 0.5 }} {{ 3 // 2 * 1.0 }}", {}),
    ("dict_literal_in_tag", "{{ {'a': {'b': 1}} }}", {}),
    ("nested_quotes_in_tags", "{{ 'a %} b' }}{% if '}}' == '}}' %}ok{% endif %}", {}),
    # errors at render
    ("call_undefined", "{{ missing() }}", {}),
    ("iterate_int_error", "{% for x in 3 %}{% endfor %}", {}),
    ("zero_division", "{{ 1 / 0 }}", {}),
    ("compare_type_error", "{{ 1 < 'a' }}", {}),
    ("generation_block", "{% generation %}assistant text{% endgeneration %}", {}),
]


def main():
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                          sort_keys=sort_keys)

    def strftime_now(fmt):
        import datetime
        return datetime.datetime(2026, 1, 15, 9, 30, 0).strftime(fmt)

    # transformers also registers its AssistantTracker extension for {% generation %}; a
    # minimal stand-in renders the body unchanged, as that extension does.
    class Generation(jinja2.ext.Extension):
        tags = {"generation"}

        def parse(self, parser):
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return jinja2.nodes.Scope(body, lineno=lineno)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[Generation, jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    names = set()
    for name, src, variables in CASES:
        assert name not in names, name
        names.add(name)
        rec = {"name": name, "template": src, "vars": variables, "output": None, "error_type": None,
               "error": None}
        try:
            rec["output"] = env.from_string(src).render(**variables)
        except Exception as e:  # the error is part of the reference
            rec["error_type"] = type(e).__name__
            rec["error"] = str(e)
        sys.stdout.write(json.dumps(rec, ensure_ascii=False) + "\n")
    print(f"{len(CASES)} cases, jinja2 {jinja2.__version__}", file=sys.stderr)


if __name__ == "__main__":
    main()
