"""Endpoint definitions from valohai.yaml, as Valohai users write them."""

from __future__ import annotations

import pytest

from dockyard_api.valohai import endpoints_from_valohai_yaml
from dockyard_common import InvalidInput

DOCUMENT = """
- step:
    name: train
    image: python:3.11
    command: python train.py
- endpoint:
    name: predict-digit
    image: python:3.11-slim
    wsgi: predict:app
    files:
      - name: model
        path: models/model.pkl
    resources:
      cpu: {min: 0.5, max: 1}
    node-selector: "gpu=false"
- endpoint:
    name: greet
    image: python:3.11
    port: 9000
    server-command:
      - export GREETING=hi
      - python serve.py
"""


def test_every_endpoint_is_taken_by_default() -> None:
    specs = {spec.name: spec for spec in endpoints_from_valohai_yaml(DOCUMENT, None)}
    assert set(specs) == {"predict-digit", "greet"}
    assert specs["predict-digit"].wsgi == "predict:app"
    assert specs["predict-digit"].files[0].path == "models/model.pkl"
    assert specs["predict-digit"].node_selector == "gpu=false"
    assert specs["greet"].server_command == ["export GREETING=hi", "python serve.py"]
    assert specs["greet"].listen_port == 9000


def test_a_missing_endpoint_is_named_with_those_the_file_has() -> None:
    with pytest.raises(InvalidInput, match="no endpoint 'explain'; it has 'predict-digit'"):
        endpoints_from_valohai_yaml(DOCUMENT, ["explain"])


def test_invalid_documents_are_refused_with_the_validator_messages() -> None:
    with pytest.raises(InvalidInput, match="does not match"):
        endpoints_from_valohai_yaml(
            "- endpoint:\n    name: Bad Name\n    image: x\n    wsgi: a:b\n", None
        )
    with pytest.raises(InvalidInput, match="not valid YAML"):
        endpoints_from_valohai_yaml("- endpoint: [unclosed", None)


def test_fields_dockyard_cannot_honour_are_refused_by_name() -> None:
    document = (
        "- endpoint:\n    name: e1\n    image: x\n    wsgi: a:b\n"
        "    workspace-volume: {mount-path: /work, size: 1024}\n"
    )
    with pytest.raises(InvalidInput, match="uses workspace-volume, which Dockyard does not"):
        endpoints_from_valohai_yaml(document, None)
