"""An ASGI endpoint, hand-written (no framework), served by uvicorn: POST {"pixels": [...]}.

The valohai.yaml runs it with a ``server-command`` listening on ``$PORT``, as on Valohai.
The model file (``model.json``, made by ``train.py``) is placed beside this module.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np

_WEIGHTS = json.loads(Path(__file__).with_name("model.json").read_text())
CLASSES = _WEIGHTS["classes"]
COEF = np.asarray(_WEIGHTS["coef"])
INTERCEPT = np.asarray(_WEIGHTS["intercept"])

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


def predict(payload: Any) -> dict[str, Any]:
    """The digit and the model's confidence for one 8x8 image given as 64 pixel values."""
    pixels = np.asarray(payload["pixels"], dtype=float).reshape(64)
    scores = COEF @ pixels + INTERCEPT  # multinomial logistic regression
    probabilities = np.exp(scores - scores.max())
    probabilities /= probabilities.sum()
    best = int(np.argmax(probabilities))
    return {"digit": int(CLASSES[best]), "confidence": round(float(probabilities[best]), 4)}


async def _body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    """POST a JSON body to predict; GET describes the endpoint."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    if scope["method"] == "GET":
        status, answer = 200, {"model": "digits", "send": {"pixels": "64 numbers, 0-16"}}
    else:
        try:
            status, answer = 200, predict(json.loads(await _body(receive)))
        except (ValueError, KeyError, TypeError) as exc:
            status, answer = 400, {"error": f"send {{'pixels': [64 numbers]}}: {exc}"}
    body = json.dumps(answer).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
