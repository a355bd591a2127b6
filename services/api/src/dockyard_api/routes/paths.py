"""Path parameters shared by the project-scoped routes, validated by the common name rules,
and the OpenAPI description of a response header."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path

from dockyard_common import DeploymentName, OwnerName, ProjectName, VersionName

__all__ = ["DeploymentPath", "OwnerPath", "ProjectPath", "VersionPath", "response_header"]

OwnerPath = Annotated[OwnerName, Path(description="Owner (user or organisation) name.")]
ProjectPath = Annotated[ProjectName, Path(description="Project name.")]
DeploymentPath = Annotated[DeploymentName, Path(description="Deployment name.")]
VersionPath = Annotated[VersionName, Path(description="Version name, e.g. 20261125.1.")]


def response_header(description: str) -> dict[str, Any]:
    """An OpenAPI header object for a route's ``responses``: a string, described."""
    return {"description": description, "schema": {"type": "string"}}
