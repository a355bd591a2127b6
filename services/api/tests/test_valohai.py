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
    specs = {spec.name: spec for spec in endpoints_from_valohai_yaml(DOCUMENT, None).specs}
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
    with pytest.raises(InvalidInput, match="breaks the rule"):
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


@pytest.mark.parametrize(
    ("name", "proposal"), [("Predict-Digit", "predict-digit"), ("my model", "my-model")]
)
def test_old_style_endpoint_names_get_the_rule_and_a_valid_proposal(
    name: str, proposal: str
) -> None:
    document = f"- endpoint:\n    name: {name}\n    image: x\n    wsgi: a:b\n"
    with pytest.raises(InvalidInput) as caught:
        endpoints_from_valohai_yaml(document, None)
    assert "^[a-z][a-z0-9-]+$" in str(caught.value)
    assert f"try {proposal!r}" in str(caught.value)


EVERY_FORM = """
- endpoint:
    name: module-only
    image: python:3.11
    wsgi: predict
- endpoint:
    name: one-line
    image: python:3.11
    server-command: python -m http.server $PORT
- endpoint:
    name: block
    image: python:3.11
    server-command: |
      export MODEL=models/a.pkl && \\
        python serve.py --port $PORT
- endpoint:
    name: with-everything
    image: python:3.11
    port: 9000
    server-command: [pip install -r req.txt, python serve.py]
    files:
      - name: model
        path: models/deep/model.pkl
        description: weights
    resources:
      cpu: {min: 1, max: 2}
      memory: {min: 512, max: 1024}
      devices: {nvidia.com/gpu: 1}
    node-selector: "gpu=true"
    tolerations:
      - key: gpu
        operator: Equal
        value: "true"
        effect: NoSchedule
- step:
    name: train
    image: python:3.11
    command: python train.py
"""


def test_every_endpoint_form_valohai_accepts_is_taken_as_written() -> None:
    specs = {s.name: s for s in endpoints_from_valohai_yaml(EVERY_FORM, None).specs}
    assert specs["module-only"].wsgi == "predict"
    assert specs["one-line"].server_command == "python -m http.server $PORT"
    assert specs["one-line"].listen_port == 8000
    block = specs["block"].server_command
    assert isinstance(block, str) and "\\\n" in block and "$PORT" in block
    full = specs["with-everything"]
    assert full.server_command == ["pip install -r req.txt", "python serve.py"]
    assert full.listen_port == 9000
    assert full.files[0].path == "models/deep/model.pkl"
    assert full.resources["devices"] == {"nvidia.com/gpu": 1}
    assert full.resources["memory"] == {"min": 512, "max": 1024}
    assert full.node_selector == "gpu=true"
    assert full.tolerations[0]["effect"] == "NoSchedule"


HORSES = """
- step:
    name: train
    image: tensorflow/tensorflow:2.6.0
    command: python train.py
- endpoint:
    name: Horses_Vs_Humans
    image: tensorflow/tensorflow:2.6.0
    server-command: python app.py
- endpoint:
    name: greet
    image: python:3.9
    server-command: python -m wsgiref.simple_server
"""


def test_an_invalid_endpoint_not_deployed_is_a_warning_not_a_refusal() -> None:
    taken = endpoints_from_valohai_yaml(HORSES, ["greet"])
    assert [s.name for s in taken.specs] == ["greet"]
    [warning] = taken.warnings
    assert "endpoint 'Horses_Vs_Humans' is not valid (not deployed)" in warning
    assert "try 'horses-vs-humans'" in warning


def test_deploying_the_invalid_endpoint_itself_is_refused() -> None:
    for names in (["Horses_Vs_Humans"], None):  # None: every endpoint, that one included
        with pytest.raises(InvalidInput, match="try 'horses-vs-humans'"):
            endpoints_from_valohai_yaml(HORSES, names)


def test_an_endpoint_defined_twice_is_refused_not_merged() -> None:
    twice = HORSES + "- endpoint:\n    name: greet\n    image: python:3.11\n    wsgi: app\n"
    with pytest.raises(InvalidInput, match=r"endpoint 'greet' 2 times \(items 3, 4\)"):
        endpoints_from_valohai_yaml(twice, ["Horses_Vs_Humans"])
