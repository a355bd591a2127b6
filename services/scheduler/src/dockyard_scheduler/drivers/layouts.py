"""Images in an OCI layout on this machine, as the embedded builder writes them.

Shared by the local driver (which unpacks them) and the container driver (which hands them to
its engine).
"""

from __future__ import annotations

from pathlib import Path

from dockyard_common import PermanentError
from dockyard_common.oci_layout import OciLayout

__all__ = ["layout_of"]


def layout_of(reference: str) -> OciLayout:
    """The layout of an ``oci:<dir>:<ref>`` image reference."""
    transport, _, rest = reference.partition(":")
    if transport != "oci" or not rest:
        raise PermanentError(f"the local driver runs only OCI layout images, not {reference!r}")
    # As skopeo reads it: the layout path ends at the first ':'; the tag may hold more.
    directory, _, _ = rest.partition(":")
    return OciLayout(Path(directory))
