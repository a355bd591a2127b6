"""The builder's consumer: ``version.created`` in; reports of the build out.

The builder reports (``builder.build.started``, ``builder.build.succeeded`` with the image,
``builder.build.failed`` with the reason); the API folds each into the version's record and
announces the fact (``version.built``, ...) that everyone else acts on. Only its live
progress (``version.build.progress``) goes out as it is: the record keeps none.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import IO

import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from dockyard_builder.base import RegistrySource
from dockyard_builder.build import Progress, build_version, push_version
from dockyard_builder.cache import LayerCache
from dockyard_builder.downloads import download
from dockyard_builder.engine import build_on_engine
from dockyard_builder.git import fetch_commit
from dockyard_builder.progress import ProgressReporter
from dockyard_builder.registry import RegistryClient
from dockyard_builder.settings import BuilderSettings
from dockyard_common import (
    BuildProgress,
    CloudEvent,
    EventType,
    ImageInfo,
    PermanentError,
    Target,
    TargetKind,
    TransientError,
    Version,
    VersionStatus,
    get_logger,
)
from dockyard_common.oci_layout import OciLayout
from dockyard_common.runtime import EventPublisher, ResourceStore, keep_alive, run_consumer
from dockyard_common.subjects import BLOB_BUCKET, TARGETS_BUCKET, blob_object_name, version_key
from dockyard_common.subscriptions import BUILD_CONSUMER

__all__ = ["Builder"]

log = get_logger(__name__)


class Builder:
    """Builds every created version once; a redelivered event rebuilds to the same digest."""

    def __init__(self, js: JetStreamContext, settings: BuilderSettings) -> None:
        self._js = js
        self._settings = settings
        self._events = EventPublisher(js, source=f"{settings.event_source}/builder")

    async def run(self) -> None:
        """Consume ``version.created`` until cancelled, up to ``build_concurrency`` at once."""
        spec = replace(BUILD_CONSUMER, concurrency=self._settings.build_concurrency)
        await run_consumer(self._js, spec, self.handle)

    async def handle(self, event: CloudEvent, message: Msg) -> None:
        """Build the version ``event`` carries and report how it went."""
        version = event.data_as(Version)
        key = version_key(version.owner, version.project, version.deployment, version.name)
        revision = event.resourcerevision or str(message.metadata.sequence.stream)
        bound = log.bind(
            owner=version.owner,
            project=version.project,
            deployment=version.deployment,
            version=version.name,
            event_id=event.id,
        )
        await self._report(
            EventType.BUILDER_BUILD_STARTED,
            version.model_copy(update={"status": VersionStatus.BUILDING}),
            key,
            revision,
        )
        try:
            async with keep_alive(message):
                image = await self._build(version)
        except PermanentError as exc:
            await self._fail(version, key, revision, str(exc))
            return
        except Exception as exc:
            # Retried by redelivery; the last attempt must still end in build.failed, or the
            # version would say "building" for ever.
            attempts = message.metadata.num_delivered or 1
            if attempts < BUILD_CONSUMER.max_deliver:
                raise
            reason = str(exc) if isinstance(exc, TransientError) else f"{type(exc).__name__}: {exc}"
            await self._fail(version, key, revision, f"gave up after {attempts} attempts: {reason}")
            return
        bound.info("build.succeeded", digest=image.digest, seconds=image.build_seconds)
        built = version.model_copy(update={"status": VersionStatus.BUILT, "image": image})
        await self._report(EventType.BUILDER_BUILD_SUCCEEDED, built, key, revision)

    async def _fail(self, version: Version, key: str, revision: str, reason: str) -> None:
        log.warning(
            "build.failed",
            owner=version.owner,
            project=version.project,
            deployment=version.deployment,
            version=version.name,
            reason=reason,
        )
        failed = version.model_copy(update={"status": VersionStatus.FAILED, "error": reason})
        await self._report(EventType.BUILDER_BUILD_FAILED, failed, key, revision)

    async def _build(self, version: Version) -> ImageInfo:
        # A file whose layer is already in the layout is neither fetched nor written again.
        cache = LayerCache(self._settings.layer_cache_dir, OciLayout(self._settings.images_dir))
        digests = sorted(
            {
                str(f.digest)
                for e in version.endpoints
                for f in e.files
                if f.digest and cache.get(f.digest, f.path) is None
            }
        )
        urls = sorted({str(f.url) for e in version.endpoints for f in e.files if f.url})
        with (
            tempfile.TemporaryDirectory(dir=self._scratch()) as scratch,
            tempfile.TemporaryFile() as archive,
        ):
            code: IO[bytes] | Path = archive
            commit = None
            if version.code.git is not None:
                code = Path(scratch) / "checkout"
                commit = await fetch_commit(
                    version.code.git,
                    code,
                    allow_file_urls=self._settings.git_allow_file_urls,
                    allow_private=self._settings.git_allow_private_addresses,
                    timeout_s=self._settings.git_timeout_s,
                )
            elif version.code.blob is not None:
                await self._fetch_blob(version, version.code.blob, archive)
            files: dict[str, Path] = {}
            for digest in digests:
                path = Path(scratch) / digest.removeprefix("sha256:")
                with path.open("w+b") as out:
                    await self._fetch_blob(version, digest, out)
                files[digest] = path
            for number, url in enumerate(urls):
                path = Path(scratch) / f"download-{number}"
                await download(
                    url,
                    path,
                    max_bytes=self._settings.max_file_bytes,
                    allow_private=self._settings.files_allow_http,
                )
                files[url] = path
            progress = ProgressReporter(version, self._publish_progress, asyncio.get_running_loop())
            try:
                return await asyncio.to_thread(
                    self._build_and_push,
                    version,
                    code,
                    files,
                    commit,
                    progress,
                    await self._target_kinds(version),
                )
            finally:
                await progress.drain()

    async def _publish_progress(self, report: BuildProgress) -> None:
        key = version_key(report.owner, report.project, report.deployment, report.version)
        await self._events.publish(
            EventType.VERSION_BUILD_PROGRESS,
            report,
            resource_key=key,
            revision=f"{report.phase}-{report.bytes_done}-{time.time_ns()}",
        )

    def _build_and_push(
        self,
        version: Version,
        code: IO[bytes] | Path,
        files: dict[str, Path],
        commit: str | None,
        progress: Progress,
        kinds: frozenset[TargetKind] | None,
    ) -> ImageInfo:
        """Build into the layout, then push when a registry is configured; blocking."""
        settings = self._settings
        if version.build.backend == "docker":
            image = build_on_engine(version, code, settings, files, commit)
            if settings.registry_url is None:
                return image
            with self._registry() as client:
                return push_version(image, version, settings, client, progress)
        if settings.registry_url is None:
            return build_version(
                version, code, settings, files, commit, progress=progress, kinds=kinds
            )
        client = self._registry()
        registries = RegistrySource(
            clients={client.host: client},
            insecure_hosts=frozenset(settings.insecure_registries),
            allowed_hosts=frozenset(settings.base_registries),
            private_prefix=(client.host, settings.registry_repository_prefix),
        )
        try:
            image = build_version(
                version, code, settings, files, commit, registries, progress, kinds
            )
            return push_version(image, version, settings, client, progress)
        finally:
            registries.close()

    def _registry(self) -> RegistryClient:
        """A client of the configured registry, with its credentials."""
        settings = self._settings
        if settings.registry_url is None:
            raise PermanentError("no registry is configured (DOCKYARD_REGISTRY_URL)")
        password = settings.registry_password
        return RegistryClient(
            settings.registry_url,
            username=settings.registry_username,
            password=password.get_secret_value() if password else None,
            chunk_bytes=settings.registry_chunk_bytes,
        )

    async def _target_kinds(self, version: Version) -> frozenset[TargetKind] | None:
        """The kinds of the version's targets, from the record; None when one is unknown
        (then the build serves every kind)."""
        store = await ResourceStore.open(self._js, TARGETS_BUCKET, Target)
        kinds = set()
        for name in version.targets:
            stored = await store.get(name)
            if stored is None:
                return None
            kinds.add(stored.value.kind)
        return frozenset(kinds)

    def _scratch(self) -> Path:
        self._settings.work_dir.mkdir(parents=True, exist_ok=True)
        return self._settings.work_dir

    async def _fetch_blob(self, version: Version, digest: str, out: IO[bytes]) -> None:
        """Copy a project blob into ``out``, positioned at its start.

        No second hash here: the API stored it under its sha256 after checking the bytes,
        and the object store checks its own digest of them on every read.
        """
        name = blob_object_name(version.owner, version.project, digest)
        try:
            store = await self._js.object_store(BLOB_BUCKET)
            await store.get(name, writeinto=out)  # type: ignore[arg-type]
        except nats.js.errors.DigestMismatchError:
            raise PermanentError(f"blob {digest} is corrupt in the object store") from None
        except nats.js.errors.ObjectNotFoundError:
            raise PermanentError(
                f"blob {digest} is not in {version.owner}/{version.project}"
            ) from None
        except (nats.errors.TimeoutError, nats.errors.ConnectionClosedError) as exc:
            raise TransientError(f"could not fetch blob {digest}: {exc}") from exc
        out.seek(0)

    async def _report(self, event_type: str, version: Version, key: str, revision: str) -> None:
        await self._events.publish(
            event_type,
            version,
            resource_key=key,
            revision=revision,
        )
