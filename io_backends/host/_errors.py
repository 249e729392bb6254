"""The host's own exception: why it cannot listen."""

from __future__ import annotations


class HostBindError(OSError):
    """The host cannot listen on its address: the port is in use, needs privileges, or the address
    is not one of this machine's. ``errno`` is the operating system's."""

    def __str__(self) -> str:
        return str(self.strerror)


HostBindError.__module__ = "io_backends"  # tracebacks name the import users write

__all__ = ["HostBindError"]
