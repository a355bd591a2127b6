"""The byte stream a tar reader reads: inflated here, with running bounds, so that a
compression bomb is refused after a fraction of a second rather than a minute of CPU.

Two bounds hold as the stream inflates:

- **the running total**: the inflated bytes may exceed what the members read so far
  declare only by a little (headers, long names), so a member's data is never read past
  the archive's byte cap, nor can metadata (a pax header tarfile reads whole into memory)
  grow without a member to account for it;
- **the ratio**: deflate's ceiling is about 1032:1 (long runs of one byte). Source code
  and text inflate 3-10:1, logs and CSV rarely past 100:1, weights barely at all; a bomb
  sits near the ceiling. A high ratio alone is not hostile (a small file of zeros, a
  sparse array), so the ratio is enforced only once the inflated total is large too: a
  real project's code archive is not hundreds of megabytes of near-constant bytes, and
  its large files belong in ``files`` as blobs of their own.

No I/O beyond the file object it is handed.
"""

from __future__ import annotations

import io
import zlib
from dataclasses import dataclass
from typing import IO

from dockyard_common.errors import InvalidInput

__all__ = ["BoundedStream", "HostileArchive", "StreamLimits"]

_CHUNK = 256 * 1024
_GZIP_MAGIC = b"\x1f\x8b"
METADATA_SLACK = 4 * 1024**2
"""Inflated bytes allowed past the data of the last member announced: its padding, the next
headers (a pax header, which tarfile reads whole into memory, or a long name) and the tar
reader's read-ahead."""


class HostileArchive(InvalidInput):
    """An archive refused for what reading it would cost (a compression bomb, too many
    members or bytes): its digest is worth remembering, and it is not worth keeping."""


@dataclass(frozen=True, kw_only=True)
class StreamLimits:
    """The running total and the ratio rule (see the module's docstring)."""

    max_total_bytes: int
    """Inflated bytes in all: the archive's byte cap plus its headers."""
    max_ratio: int
    ratio_from_bytes: int
    """The ratio is enforced once this many bytes have inflated."""


class BoundedStream(io.RawIOBase):
    """A readable stream of ``source``, gunzipped when ``compressed``, refusing with
    :class:`HostileArchive` past its budget or (compressed) its ratio.

    The budget starts at :data:`METADATA_SLACK`; the tar reader announces each member's
    declared size (:meth:`allow`) before it reads the member's data, and the budget moves
    to the end of that data plus the slack.
    """

    def __init__(self, source: IO[bytes], *, compressed: bool, limits: StreamLimits) -> None:
        super().__init__()
        self._source = source
        self._limits = limits
        self._inflater = zlib.decompressobj(31) if compressed else None
        self._pending = b""
        self._ended = False
        self.compressed_bytes = 0
        self.inflated_bytes = 0
        self._budget = METADATA_SLACK

    def readable(self) -> bool:
        """Always: it is a read-only stream."""
        return True

    def allow(self, size: int) -> None:
        """Let a member's ``size`` bytes of data through (the reader checked its header)."""
        self._budget = max(self._budget, self.inflated_bytes + size + METADATA_SLACK)

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        """Fill ``buffer`` with the next inflated bytes; 0 at the end of the stream."""
        while not self._pending and not self._ended:
            self._pending = self._next_piece(len(buffer))
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size

    def _next_piece(self, wanted: int) -> bytes:
        inflater = self._inflater
        if inflater is None:
            piece = self._source.read(max(wanted, _CHUNK))
            self._ended = not piece
            self._count(piece)
            return piece
        if inflater.eof:
            rest = inflater.unused_data
            if not rest.startswith(_GZIP_MAGIC):
                self._ended = True  # trailing padding after the last gzip member
                return b""
            # A gzip file may hold several members, one after another.
            inflater = self._inflater = zlib.decompressobj(31)
            piece = inflater.decompress(rest, _CHUNK)
        elif inflater.unconsumed_tail:
            piece = inflater.decompress(inflater.unconsumed_tail, _CHUNK)
        else:
            compressed = self._source.read(_CHUNK)
            if not compressed:
                raise EOFError("the compressed stream ends before its end marker")
            self.compressed_bytes += len(compressed)
            piece = inflater.decompress(compressed, _CHUNK)
        self._count(piece)
        return piece

    def _count(self, piece: bytes) -> None:
        self.inflated_bytes += len(piece)
        limits = self._limits
        if self.inflated_bytes > limits.max_total_bytes:
            raise HostileArchive(f"archive unpacks to more than {limits.max_total_bytes} bytes")
        if self.inflated_bytes > self._budget:
            raise HostileArchive(
                "archive holds more than its members declare (a header of over "
                f"{METADATA_SLACK // 1024**2} MiB); it is not a plain tar"
            )
        if (
            self._inflater is not None
            and self.inflated_bytes > limits.ratio_from_bytes
            and self.inflated_bytes > limits.max_ratio * self.compressed_bytes
        ):
            raise HostileArchive(
                f"archive inflates more than {limits.max_ratio}:1 past "
                f"{limits.ratio_from_bytes // 1024**2} MiB ({self.compressed_bytes} compressed "
                f"bytes became {self.inflated_bytes}): that is a compression bomb, not code; "
                "upload large files as blobs and name them in 'files'"
            )
