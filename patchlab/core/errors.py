"""User-facing errors: each message says what to change."""


class PatchlabError(Exception):
    """Base class for errors whose message is meant for the user (no traceback needed)."""


class InputError(PatchlabError, ValueError):
    """Bad input from the user: a prompt pair, a target name, a file."""


class PairError(InputError):
    """A prompt pair that cannot be patched (empty, length mismatch, multi-token answer...)."""


class ModelLoadError(PatchlabError, RuntimeError):
    """A model that could not be loaded (offline, missing folder, unsupported architecture)."""


class TargetUnavailableError(InputError):
    """The model's architecture has no such activation (e.g. resid_mid in parallel attention)."""


class SessionFileError(PatchlabError):
    """A session or run-record file that is malformed or from a newer version."""


class Cancelled(PatchlabError):
    """A job was stopped by its stop flag."""
