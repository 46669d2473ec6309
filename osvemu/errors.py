"""Error families a user can read: each becomes one line and an exit status."""

from __future__ import annotations


class OsvemuError(Exception):
    """Base of every error the CLI reports as one line."""

    exit_status = 1


class ConfigError(OsvemuError):
    """An invalid option, topology or size."""

    exit_status = 2


class ImageError(OsvemuError):
    """A guest image that cannot be loaded."""

    exit_status = 2


class GuestFault(OsvemuError):
    """The guest did something the machine cannot continue from."""


class EmulatorError(OsvemuError):
    """A failure inside osvemu itself (for example an exception in a hook)."""

    exit_status = 3
