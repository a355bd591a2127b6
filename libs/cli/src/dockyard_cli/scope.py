"""The ``owner/project`` and deployment a command works on. Pure, and light to import."""

from __future__ import annotations

from dockyard_cli.errors import ConfigError

__all__ = ["Scope"]


class Scope:
    """The ``owner/project`` and deployment a command works on, and their API paths."""

    def __init__(self, project: str | None, deployment: str | None) -> None:
        if not project or project.count("/") != 1:
            raise ConfigError(
                "give the project as --project OWNER/PROJECT (or DOCKYARD_PROJECT, "
                "or dockyard login --project)"
            )
        self.owner, self.project = project.split("/")
        self.deployment = deployment

    def needs_deployment(self) -> str:
        """The deployment name; ConfigError when none was given."""
        if not self.deployment:
            raise ConfigError(
                "give the deployment as --deployment NAME (or DOCKYARD_DEPLOYMENT, "
                "or dockyard login --deployment)"
            )
        return self.deployment

    @property
    def project_path(self) -> str:
        """``/v1/projects/<owner>/<project>``."""
        return f"/v1/projects/{self.owner}/{self.project}"

    @property
    def deployment_path(self) -> str:
        """``/v1/projects/<owner>/<project>/deployments/<deployment>``."""
        return f"{self.project_path}/deployments/{self.needs_deployment()}"

    def version_path(self, version: str) -> str:
        """``.../deployments/<deployment>/versions/<version>``."""
        return f"{self.deployment_path}/versions/{version}"

    def route(self, version_or_alias: str, endpoint: str) -> str:
        """The router path of an endpoint: ``/<owner>/<project>/<deployment>/<v>/<e>/``."""
        return (
            f"/{self.owner}/{self.project}/{self.needs_deployment()}/{version_or_alias}/{endpoint}/"
        )
