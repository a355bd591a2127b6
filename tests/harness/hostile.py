"""Hostile inputs as an attacker would build them: YAML alias bombs, deep nesting, gzip bombs."""

from __future__ import annotations

import struct
import tarfile
import zlib

__all__ = ["deep_yaml", "gzip_bomb", "yaml_bomb"]

_ANCHORS = "abcdefghij"


def yaml_bomb(levels: int = 6, width: int = 10) -> str:
    """A valohai.yaml whose endpoint description is ``levels`` of nested anchors, each level
    ``width`` aliases of the one before: ``width ** levels`` strings once expanded."""
    lines = [
        "- endpoint:",
        "    name: predict",
        "    wsgi: app:app",
        "    description:",
        "      - &a [" + ",".join(['"x"'] * width) + "]",
    ]
    for level in range(1, levels):
        alias = f"*{_ANCHORS[level - 1]}"
        lines.append(f"      - &{_ANCHORS[level]} [" + ",".join([alias] * width) + "]")
    return "\n".join(lines) + "\n"


def deep_yaml(depth: int) -> str:
    """A valohai.yaml whose endpoint description is a list nested ``depth`` deep."""
    return (
        "- endpoint:\n    name: predict\n    wsgi: app:app\n"
        f"    description: {'[' * depth}{']' * depth}\n"
    )


def gzip_bomb(members: int = 22, member_bytes: int = 100 * 1024**2) -> bytes:
    """A tar.gz (one gzip member) of ``members`` files of zeros, ``member_bytes`` each: the
    default is 2.2 MB that inflates to 2.2 GB, about 1000:1.

    The zeros are deflated once and their segment repeated: each segment ends with a full
    flush, which leaves no back-reference across it, so the segments concatenate into one
    valid deflate stream (a second or two instead of deflating 2.2 GB).
    """

    def segment(data: bytes) -> bytes:
        compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
        return compressor.compress(data) + compressor.flush(zlib.Z_FULL_FLUSH)

    padded = member_bytes + (-member_bytes % 512)
    zeros = bytes(padded)
    zeros_segment = segment(zeros)
    parts = [b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"]  # gzip, deflate, no name
    crc = 0
    size = 0
    for number in range(members):
        info = tarfile.TarInfo(f"zeros-{number}.bin")
        info.size = member_bytes
        header = info.tobuf(format=tarfile.GNU_FORMAT)
        parts += [segment(header), zeros_segment]
        crc = zlib.crc32(zeros, zlib.crc32(header, crc))
        size += len(header) + padded
    end = bytes(2 * 512)
    parts.append(segment(end))
    crc = zlib.crc32(end, crc)
    size += len(end)
    parts.append(zlib.compressobj(9, zlib.DEFLATED, -15).flush())  # the final, empty block
    parts.append(struct.pack("<II", crc, size & 0xFFFFFFFF))
    return b"".join(parts)
