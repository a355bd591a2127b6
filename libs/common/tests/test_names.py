"""Name rules: what users may call things, and the help they get when a name is wrong."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from pydantic import BaseModel, ValidationError

from dockyard_common.names import (
    EndpointName,
    InvalidName,
    OwnerName,
    suggest_name,
    validate_dns_label,
    validate_endpoint_name,
    validate_file_name,
    validate_version_name,
)


@pytest.mark.parametrize("name", ["acme", "a", "my-project", "x1", "a" * 63, "0day"])
def test_lowercase_dns_labels_are_accepted(name: str) -> None:
    assert validate_dns_label(name) == name


@pytest.mark.parametrize(
    "name", ["", "Acme", "my_project", "-lead", "trail-", "a.b", "a" * 64, "spa ce", "ünï"]
)
def test_names_that_are_not_dns_labels_are_refused(name: str) -> None:
    with pytest.raises(InvalidName):
        validate_dns_label(name, "project")


def test_a_refused_name_comes_with_a_valid_suggestion() -> None:
    with pytest.raises(InvalidName, match="try 'predict-digit'"):
        validate_dns_label("Predict_Digit", "deployment")
    assert suggest_name("My  Model!") == "my-model"


@pytest.mark.parametrize("name", ["predict", "predict-digit", "ab", "a1"])
def test_endpoint_names_follow_the_valohai_rule(name: str) -> None:
    assert validate_endpoint_name(name) == name


@pytest.mark.parametrize(
    ("name", "suggestion"),
    [
        ("Predict-Digit", "predict-digit"),
        ("my model", "my-model"),
        ("1st", "e-1st"),
        ("a", "a-endpoint"),
    ],
)
def test_endpoint_names_breaking_the_rule_quote_it_and_propose_a_name(
    name: str, suggestion: str
) -> None:
    with pytest.raises(InvalidName) as caught:
        validate_endpoint_name(name)
    assert "^[a-z][a-z0-9-]+$" in str(caught.value)
    assert f"try {suggestion!r}" in str(caught.value)


@pytest.mark.parametrize("name", ["20261125.1", "v2", "2026-11-25.3", "rc1"])
def test_version_names_allow_the_default_date_form(name: str) -> None:
    assert validate_version_name(name) == name


@pytest.mark.parametrize("name", [".1", "1.", "a..b", "V2", "a/b", ""])
def test_bad_version_names_are_refused(name: str) -> None:
    with pytest.raises(InvalidName):
        validate_version_name(name)


def test_annotated_name_types_validate_inside_models() -> None:
    class Thing(BaseModel):
        owner: OwnerName
        endpoint: EndpointName

    assert Thing(owner="acme", endpoint="predict").owner == "acme"
    with pytest.raises(ValidationError, match="owner name 'ACME'"):
        Thing(owner="ACME", endpoint="predict")


CONTROL_SUFFIXES = ["\n", "\r", "\t", "\x00", "\x7f", " ", "\r\n"]


@pytest.mark.parametrize("suffix", CONTROL_SUFFIXES)
@pytest.mark.parametrize(
    ("validate", "good"),
    [
        (validate_dns_label, "acme"),
        (validate_endpoint_name, "predict"),
        (validate_version_name, "20261125.1"),
        (validate_file_name, "model.pkl"),
    ],
)
def test_a_valid_name_with_a_control_character_or_space_after_it_is_refused(
    validate: Callable[[str], str], good: str, suffix: str
) -> None:
    assert validate(good) == good
    with pytest.raises(InvalidName):
        validate(good + suffix)
    if validate is validate_file_name and suffix == " ":
        return  # a file name may hold a space inside ("model weights"), as valohai.yaml allows
    with pytest.raises(InvalidName):
        validate(good[:2] + suffix + good[2:])


@pytest.mark.parametrize(
    "name", ["model", "weights.pt", "Model_v2", "a", "x-1.bin", "my model", ".hidden", "ü"]
)
def test_file_names_are_what_valohai_yaml_allows(name: str) -> None:
    assert validate_file_name(name) == name


@pytest.mark.parametrize("name", ["", "a/b", "a\\b", " x", "x ", "a" * 256])
def test_file_names_with_slashes_edge_spaces_or_too_long_are_refused(name: str) -> None:
    with pytest.raises(InvalidName, match="file name"):
        validate_file_name(name)
