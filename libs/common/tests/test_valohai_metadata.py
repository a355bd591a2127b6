"""``valohai-metadata.json``: the document Valohai endpoints read at start, in Valohai's shape."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from dockyard_common import CodeRef, EndpointFile, EndpointSpec, ImageInfo, Version
from dockyard_common.valohai_metadata import valohai_metadata, valohai_metadata_json

DIGEST = "sha256:" + "1" * 64


def a_version() -> Version:
    model = EndpointFile(
        name="model", path="models/fraud.pkl", url="https://data.example.com/v2/fraud_v2.pkl"
    )
    weights = EndpointFile(name="weights", path="w.bin", digest=DIGEST)
    return Version(
        owner="acme",
        project="fraud",
        deployment="api",
        name="20240315.2",
        code=CodeRef(blob=DIGEST),
        targets=["eu-west"],
        created_at=datetime(2024, 3, 15, 14, 23, 11, 431914, tzinfo=UTC),
        endpoints=[
            EndpointSpec(
                name="predict",
                wsgi="app:app",
                files=[model, weights],
                resources={"cpu": {"min": 0.1, "max": 2}, "memory": {"min": 256, "max": 512}},
            ),
            EndpointSpec(name="health", wsgi="app:app"),
        ],
        image=ImageInfo(
            reference="oci:/x:y",
            digest=DIGEST,
            endpoints={"predict": DIGEST, "health": DIGEST},
            layers=[],
            file_sizes={"predict/model": 1048576, "predict/weights": 42},
        ),
    )


def test_the_document_has_valohais_shape_and_the_versions_facts() -> None:
    document = valohai_metadata(a_version(), "predict", "eu-west", "https://models.example.com/")
    assert document == {
        "deployment": {
            "name": "api",
            "target": "eu-west",
            "url": "https://models.example.com/acme/fraud/api/",
        },
        "version": {"name": "20240315.2", "enabled": True, "ctime": "2024-03-15T14:23:11.431914Z"},
        "endpoint": {
            "name": "predict",
            "cpu_request": 0.1,
            "memory_limit": 512,
            "files": [
                {
                    "name": "model",
                    "path": "models/fraud.pkl",
                    "datum": {"name": "fraud_v2.pkl", "size": 1048576},
                },
                {"name": "weights", "path": "w.bin", "datum": {"name": "w.bin", "size": 42}},
            ],
        },
        "project": {"name": "fraud", "owner": {"username": "acme"}},
        "meta": {"schema_version": 1, "generator": "dockyard"},
    }


def test_what_an_endpoint_does_not_declare_is_null_and_the_json_is_stable() -> None:
    version = a_version()
    document = valohai_metadata(version, "health", "local-eu")
    assert document["endpoint"] == {
        "name": "health",
        "cpu_request": None,
        "memory_limit": None,
        "files": [],
    }
    assert document["deployment"]["url"] == "/acme/fraud/api/"
    text = valohai_metadata_json(version, "health", "local-eu")
    assert json.loads(text) == document
    assert text == valohai_metadata_json(version, "health", "local-eu")


def test_an_endpoint_the_version_lacks_is_refused() -> None:
    with pytest.raises(KeyError, match="no endpoint 'nope'"):
        valohai_metadata(a_version(), "nope", "local-eu")
