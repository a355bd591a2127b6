"""A valohai.yaml is bounded before it is expanded: alias bombs, deep nesting and
self-referring aliases are refused at once, with a short message naming the bound."""

from __future__ import annotations

import time

import pytest

from dockyard_api.valohai import MAX_MESSAGE_CHARS, endpoints_from_valohai_yaml
from dockyard_api.yaml_bounds import YamlLimits, check_yaml_bounds
from dockyard_common import InvalidInput
from tests.harness.hostile import deep_yaml, yaml_bomb


def refusal(text: str) -> str:
    """The message a document is refused with; it must come at once and stay short."""
    started = time.perf_counter()
    with pytest.raises(InvalidInput) as caught:
        endpoints_from_valohai_yaml(text, None)
    assert time.perf_counter() - started < 1.0, "the refusal took a second or more"
    message = str(caught.value)
    assert len(message) < 1000, message[:300]
    return message


def test_a_billion_laughs_document_is_refused_before_it_is_expanded() -> None:
    bomb = yaml_bomb(levels=6)
    assert len(bomb.encode()) < 500
    assert "expands to more than 50000 nodes" in refusal(bomb)


def test_a_few_levels_of_aliases_below_the_budget_pass_the_bound() -> None:
    check_yaml_bounds(yaml_bomb(levels=4))  # 10 ** 4 strings once expanded
    with pytest.raises(InvalidInput, match="expands to more than"):
        check_yaml_bounds(yaml_bomb(levels=5))


@pytest.mark.parametrize("depth", [100, 50_000])
def test_deep_nesting_is_refused_as_bad_input(depth: int) -> None:
    message = refusal(deep_yaml(depth))
    assert "deeper than 64 levels" in message or "maximum nesting depth" in message


def test_the_depth_bound_is_the_platform_s_own_whatever_the_parser() -> None:
    with pytest.raises(InvalidInput, match="deeper than 64 levels"):
        check_yaml_bounds(deep_yaml(100))
    check_yaml_bounds(deep_yaml(60))


def test_an_alias_inside_the_node_it_names_is_refused() -> None:
    assert "refers to a node that contains it" in refusal("- endpoint: &a [*a]\n")


def test_an_alias_before_its_anchor_is_refused() -> None:
    assert "names no anchor" in refusal("- endpoint: *nowhere\n")


def test_too_many_aliases_are_refused() -> None:
    text = "- &x a\n" + "".join("- *x\n" for _ in range(1001))
    with pytest.raises(InvalidInput, match="more than 1000 aliases"):
        check_yaml_bounds(text)


def test_a_document_larger_than_the_bound_is_refused_by_size() -> None:
    with pytest.raises(InvalidInput, match="at most 100 are"):
        check_yaml_bounds("- x: " + "y" * 200, YamlLimits(max_bytes=100))


def test_a_document_that_is_one_string_is_not_read_as_another_document() -> None:
    # valohai_yaml.parse would take a string for YAML text and parse it again, unbounded.
    assert "not a list" in refusal(f"{yaml_bomb(levels=6)!r}\n")


def test_merge_keys_and_aliases_of_ordinary_documents_pass() -> None:
    document = """
- endpoint: &common
    name: predict
    image: python:3.11
    wsgi: app:app
- endpoint:
    <<: *common
    name: explain
"""
    assert [s.name for s in endpoints_from_valohai_yaml(document, None).specs] == [
        "predict",
        "explain",
    ]


def test_validator_messages_quoting_a_large_value_are_shortened() -> None:
    big = "[" + ", ".join(f'"{n}"' for n in range(20_000)) + "]"
    document = f"- endpoint:\n    name: predict\n    wsgi: app:app\n    description: {big}\n"
    message = refusal(document)
    assert "more characters" in message
    assert len(message) < MAX_MESSAGE_CHARS + 200
