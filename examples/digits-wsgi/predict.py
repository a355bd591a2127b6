"""A WSGI endpoint: POST {"pixels": [64 numbers, 0-16]} and get the digit back.

The model file (``model.json``, made by ``train.py``) is placed beside this module by the
platform: the valohai.yaml declares it and ``dockyard deploy --file predict.model=model.json``
uploads it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

_WEIGHTS = json.loads(Path(__file__).with_name("model.json").read_text())
CLASSES = _WEIGHTS["classes"]
COEF = np.asarray(_WEIGHTS["coef"])
INTERCEPT = np.asarray(_WEIGHTS["intercept"])

StartResponse = Callable[[str, list[tuple[str, str]]], Any]


def predict(payload: Any) -> dict[str, Any]:
    """The digit and the model's confidence for one 8x8 image given as 64 pixel values."""
    pixels = np.asarray(payload["pixels"], dtype=float).reshape(64)
    scores = COEF @ pixels + INTERCEPT  # multinomial logistic regression
    probabilities = np.exp(scores - scores.max())
    probabilities /= probabilities.sum()
    best = int(np.argmax(probabilities))
    return {"digit": int(CLASSES[best]), "confidence": round(float(probabilities[best]), 4)}


def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """POST a JSON body to predict; GET describes the endpoint."""
    if environ["REQUEST_METHOD"] == "GET":
        status, answer = "200 OK", {"model": "digits", "send": {"pixels": "64 numbers, 0-16"}}
    else:
        size = int(environ.get("CONTENT_LENGTH") or 0)
        try:
            status, answer = "200 OK", predict(json.loads(environ["wsgi.input"].read(size)))
        except (ValueError, KeyError, TypeError) as exc:
            status, answer = "400 Bad Request", {"error": f"send {{'pixels': [64 numbers]}}: {exc}"}
    body = json.dumps(answer).encode()
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    start_response(status, headers)
    return [body]
