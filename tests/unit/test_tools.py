from outcrop.core.tools import OutputFilter, parse_tool_calls
from outcrop.types import ToolSpec

WEATHER = [ToolSpec("get_weather", "weather", {"type": "object", "properties": {"city": {"type": "string"}}})]


def test_parses_fenced_json_call():
    text, calls = parse_tool_calls('```json\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n```', WEATHER)
    assert text == ""
    assert [(c.name, c.input) for c in calls] == [("get_weather", {"city": "Paris"})]
    assert calls[0].id.startswith("tooluse_")


def test_parses_tagged_calls_and_keeps_text():
    raw = 'Let me check.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>'
    text, calls = parse_tool_calls(raw, WEATHER)
    assert text == "Let me check."
    assert calls[0].input == {"city": "Oslo"}


def test_unknown_tool_names_stay_text():
    raw = '{"name": "launch_rockets", "arguments": {}}'
    assert parse_tool_calls(raw, WEATHER) == (raw, [])


def test_string_arguments_are_decoded():
    _, calls = parse_tool_calls('{"name": "get_weather", "arguments": "{\\"city\\": \\"Rome\\"}"}', WEATHER)
    assert calls[0].input == {"city": "Rome"}


def test_stop_sequence_split_across_tokens():
    f = OutputFilter(stop=["END"], hold_tools=False)
    out = f.feed("hello E") + f.feed("N") + f.feed("D more")
    assert out == "hello " and f.stopped


def test_partial_stop_prefix_is_released_when_it_is_not_a_stop():
    f = OutputFilter(stop=["END"], hold_tools=False)
    assert f.feed("an E") == "an "
    assert f.feed("gg") == "Egg"
    assert f.flush() == ""


def test_tool_json_is_held_back_while_text_streams():
    f = OutputFilter(stop=[], hold_tools=True)
    assert f.feed("Sure. ") == "Sure. "
    assert f.feed("```json\n{") == ""
    assert f.feed('"name": "get_weather"}\n```') == ""
    assert f.flush().startswith("```json")


def test_leading_brace_is_held():
    f = OutputFilter(stop=[], hold_tools=True)
    assert f.feed("  {").strip() == ""
    assert f.feed('"name": 1}') == ""
    assert f.holding
