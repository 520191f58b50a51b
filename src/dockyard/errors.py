"""One exception hierarchy for the whole engine.

Each error carries the HTTP status the Engine API answers with, so the API
layer maps errors to responses without knowing where they came from.
"""


class DockyardError(Exception):
    """Base of every error Dockyard raises on purpose."""

    status = 500


class InvalidArgument(DockyardError):
    status = 400


class NotFound(DockyardError):
    status = 404


class Conflict(DockyardError):
    status = 409


class ConfigError(InvalidArgument):
    """A configuration (config.json, daemon.json, ...) is invalid.

    `field` names the offending field as a dotted path (e.g. `linux.namespaces[2].type`).
    """

    def __init__(self, field: str, message: str):
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}" if field else message)


class SystemError_(DockyardError):
    """A system call or external program failed."""
