"""A client of the OCI distribution API: the few calls a builder needs, blocking.

Blobs are checked with ``HEAD`` before anything is sent, mounted from another repository of
the same registry when possible, and otherwise uploaded in chunks (``POST``, ``PATCH``
per chunk, ``PUT`` with the digest). Registries that want credentials say so with a 401 and
``WWW-Authenticate``: ``Basic`` gets the configured user and password, ``Bearer`` a token
fetched from the realm it names (with the same credentials, if any). Credentials are never
logged or put in an error message.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx

from dockyard_common import PermanentError, TransientError, get_logger

__all__ = ["ImageName", "RegistryClient", "RegistryError", "parse_image_name"]

log = get_logger(__name__)

DOCKER_HUB = "registry-1.docker.io"
MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)
_CHALLENGE = re.compile(r'(\w+)="([^"]*)"')


def _registry_errors(response: httpx.Response) -> str:
    """The distribution API's error codes and messages of a response, nothing else.

    A body from anywhere else (a proxy, or a service a user pointed the builder at) is not
    repeated into an event a user reads.
    """
    try:
        errors = response.json().get("errors", [])
        return "; ".join(f"{e.get('code')}: {e.get('message')}"[:200] for e in errors[:3])
    except (ValueError, AttributeError):
        return ""


class RegistryError(PermanentError):
    """The registry refused a request in a way retrying cannot fix."""


@dataclass(frozen=True)
class ImageName:
    """``host/repository`` and a tag or digest, as in ``127.0.0.1:5000/base/python:3.11``."""

    host: str
    repository: str
    reference: str

    def __str__(self) -> str:
        joiner = "@" if self.reference.startswith("sha256:") else ":"
        return f"{self.host}/{self.repository}{joiner}{self.reference}"


def parse_image_name(name: str) -> ImageName:
    """Split an image name the way Docker does (``python:3.11`` is Docker Hub's library)."""
    rest, _, digest = name.partition("@")
    first, slash, remainder = rest.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        host, path = first, remainder
    else:
        host, path = DOCKER_HUB, rest if slash else f"library/{rest}"
    tag = "latest"
    if ":" in path:
        path, _, tag = path.rpartition(":")
    if not path or not re.fullmatch(r"[a-z0-9]+(?:[._/-][a-z0-9]+)*", path):
        raise PermanentError(f"{name!r} is not an image name")
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", tag) or (
        digest and not re.fullmatch(r"sha256:[0-9a-f]{64}", digest)
    ):
        raise PermanentError(f"{name!r} is not an image name")
    return ImageName(host=host, repository=path, reference=digest or tag)


class RegistryClient:
    """One registry (``http://host:port`` or ``https://host``), with its credentials."""

    def __init__(
        self,
        url: str,
        *,
        username: str | None = None,
        password: str | None = None,
        chunk_bytes: int = 16 * 1024 * 1024,
        timeout_s: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.host = httpx.URL(self.url).netloc.decode()
        self._credentials = (username, password or "") if username else None
        self._chunk_bytes = chunk_bytes
        self._client = httpx.Client(timeout=timeout_s, follow_redirects=False, transport=transport)
        self._tokens: dict[str, str] = {}

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- requests ---------------------------------------------------------------------

    def _request(
        self,
        method: str,
        path_or_url: str,
        *,
        scope: str,
        ok: tuple[int, ...],
        headers: dict[str, str] | None = None,
        content: bytes | Iterator[bytes] | None = None,
        params: dict[str, str] | None = None,
        stream: bool = False,
        follow_redirects: bool = False,
    ) -> httpx.Response:
        url = path_or_url if "://" in path_or_url else f"{self.url}{path_or_url}"
        if params:
            # Upload locations carry their own state in the query: add to it, never replace it.
            url = str(httpx.URL(url).copy_merge_params(params))
        for attempt in (1, 2):
            request = self._client.build_request(
                method, url, headers=self._auth(scope, headers), content=content
            )
            try:
                response = self._client.send(
                    request, stream=stream, follow_redirects=follow_redirects
                )
            except httpx.TransportError as exc:
                raise TransientError(f"registry {self.host} did not answer: {exc}") from exc
            if response.status_code == 401 and attempt == 1 and self._authenticate(response, scope):
                response.close()
                continue
            break
        if response.status_code in ok:
            return response
        if stream:
            response.read()
        response.close()
        message = f"registry {self.host}: {method} {httpx.URL(url).path} -> {response.status_code}"
        detail = _registry_errors(response)
        if response.status_code in (429, 500, 502, 503, 504):
            raise TransientError(f"{message} {detail}", delay=5.0)
        raise RegistryError(f"{message} {detail}")

    def _auth(self, scope: str, headers: dict[str, str] | None) -> dict[str, str]:
        result = dict(headers or {})
        token = self._tokens.get(scope) or self._tokens.get("*")
        if token is not None:
            result["Authorization"] = token
        return result

    def _authenticate(self, response: httpx.Response, scope: str) -> bool:
        """Learn how to authenticate from a 401; False when there is nothing to try."""
        challenge = response.headers.get("WWW-Authenticate", "")
        scheme = challenge.split(" ", 1)[0].lower()
        if scheme == "basic":
            if self._credentials is None:
                raise RegistryError(f"registry {self.host} wants credentials; none are configured")
            basic = httpx.BasicAuth(*self._credentials)
            self._tokens["*"] = next(basic.auth_flow(httpx.Request("GET", self.url))).headers[
                "Authorization"
            ]
            return True
        if scheme != "bearer":
            return False
        fields = dict(_CHALLENGE.findall(challenge))
        realm = fields.get("realm")
        if not realm:
            return False
        if self.url.startswith("https://") and not realm.startswith("https://"):
            raise RegistryError(f"registry {self.host} names a token service without https")
        params = {"service": fields.get("service", ""), "scope": fields.get("scope", scope)}
        try:
            answer = self._client.get(realm, params=params, auth=self._credentials or None)
        except httpx.TransportError as exc:
            raise TransientError(f"token service of {self.host} did not answer: {exc}") from exc
        if answer.status_code != 200:
            raise RegistryError(
                f"token service of {self.host} refused {params['scope']}: {answer.status_code}"
            )
        body = answer.json()
        token = body.get("token") or body.get("access_token")
        if not token:
            raise RegistryError(f"token service of {self.host} answered without a token")
        self._tokens[scope] = f"Bearer {token}"
        return True

    # -- blobs ------------------------------------------------------------------------

    def has_blob(self, repository: str, digest: str) -> bool:
        """Whether the repository already holds the blob (``HEAD``)."""
        response = self._request(
            "HEAD",
            f"/v2/{repository}/blobs/{digest}",
            scope=f"repository:{repository}:pull",
            ok=(200, 404),
        )
        return response.status_code == 200

    def mount_blob(self, repository: str, digest: str, source_repository: str) -> bool:
        """Link a blob of another repository of this registry; False if it did not mount."""
        response = self._request(
            "POST",
            f"/v2/{repository}/blobs/uploads/",
            scope=f"repository:{repository}:pull,push",
            params={"mount": digest, "from": source_repository},
            ok=(201, 202),
        )
        if response.status_code == 202:  # an upload session instead: abandon it
            if response.headers.get("Location"):
                self._request(
                    "DELETE",
                    self._location(response),
                    scope=f"repository:{repository}:pull,push",
                    ok=(204, 404, 405),
                )
            return False
        return True

    def upload_blob(self, repository: str, digest: str, source: IO[bytes]) -> int:
        """Upload ``source`` as blob ``digest``; returns the bytes sent.

        A blob smaller than a chunk goes in the closing ``PUT`` (two requests); a larger one
        in ``PATCH`` chunks first, so that no request body is larger than a chunk.
        """
        scope = f"repository:{repository}:pull,push"
        started = self._request("POST", f"/v2/{repository}/blobs/uploads/", scope=scope, ok=(202,))
        location = self._location(started)
        offset = 0
        chunk = source.read(self._chunk_bytes)
        while chunk:
            following = source.read(self._chunk_bytes)
            if not following and offset == 0:
                break  # a one-chunk blob: monolithic PUT below
            response = self._request(
                "PATCH",
                location,
                scope=scope,
                ok=(202,),
                headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Range": f"{offset}-{offset + len(chunk) - 1}",
                    "Content-Length": str(len(chunk)),
                },
                content=chunk,
            )
            offset += len(chunk)
            location = self._location(response)
            chunk = following
        self._request(
            "PUT",
            location,
            scope=scope,
            ok=(201,),
            params={"digest": digest},
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(len(chunk))},
            content=chunk,
        )
        return offset + len(chunk)

    def download_blob(self, repository: str, digest: str, dest: Path) -> None:
        """Write blob ``digest`` to ``dest``, checking its bytes against the digest."""
        # Registries send blob downloads to their storage with a redirect; httpx drops the
        # Authorization header when a redirect leaves the registry's origin.
        response = self._request(
            "GET",
            f"/v2/{repository}/blobs/{digest}",
            scope=f"repository:{repository}:pull",
            ok=(200,),
            stream=True,
            follow_redirects=True,
        )
        hasher = hashlib.sha256()
        try:
            with dest.open("wb") as out:
                for chunk in response.iter_bytes(1024 * 1024):
                    hasher.update(chunk)
                    out.write(chunk)
        except httpx.TransportError as exc:
            raise TransientError(f"download of {digest} from {self.host} broke: {exc}") from exc
        finally:
            response.close()
        if f"sha256:{hasher.hexdigest()}" != digest:
            dest.unlink(missing_ok=True)
            raise TransientError(f"blob {digest} from {self.host} did not match its digest")

    def _location(self, response: httpx.Response) -> str:
        location = response.headers.get("Location")
        if not location:
            raise RegistryError(f"registry {self.host} started an upload without a Location")
        # Locations may be relative; they may never send our credentials to another host.
        url = httpx.URL(self.url).join(location)
        if url.netloc.decode() != self.host:
            raise RegistryError(f"registry {self.host} sent an upload to another host")
        return str(url)

    # -- manifests --------------------------------------------------------------------

    def get_manifest(self, repository: str, reference: str) -> tuple[bytes, str]:
        """The manifest or index bytes under a tag or digest, and its media type."""
        response = self._request(
            "GET",
            f"/v2/{repository}/manifests/{reference}",
            scope=f"repository:{repository}:pull",
            ok=(200,),
            headers={"Accept": MANIFEST_TYPES},
        )
        data = response.content
        if reference.startswith("sha256:") and (
            f"sha256:{hashlib.sha256(data).hexdigest()}" != reference
        ):
            raise RegistryError(f"manifest {reference} from {self.host} did not match its digest")
        return data, response.headers.get("Content-Type", "").split(";")[0]

    def put_manifest(self, repository: str, reference: str, data: bytes, media_type: str) -> None:
        """Store a manifest or index under a tag or its digest."""
        self._request(
            "PUT",
            f"/v2/{repository}/manifests/{reference}",
            scope=f"repository:{repository}:pull,push",
            ok=(201,),
            headers={"Content-Type": media_type},
            content=data,
        )
