"""The error types library code raises; the CLI turns each into one line and a non-zero exit."""


class EdgeesError(Exception):
    """A problem the user can fix; the message names the problem and the fix, on one line."""

    exit_code = 1


class GGUFError(EdgeesError):
    """A file is not a well-formed GGUF model (or not one we can use)."""

    exit_code = 2


class ModelNotFound(EdgeesError):
    """A model name or path that does not resolve to a file."""

    exit_code = 2


class UnsupportedModel(EdgeesError):
    """A valid GGUF that edgees cannot train or evaluate (nothing trainable, repacked weights...)."""

    exit_code = 2


class TaskError(EdgeesError):
    """A task spec, task file or reward function that is unusable."""

    exit_code = 2


class RunError(EdgeesError):
    """A run directory that is locked, damaged, or does not match its base model."""

    exit_code = 3


def os_error_line(exc: OSError) -> str:
    """One line for an operating-system error the library let through (a full disk, a path that is
    not a directory, a permission): what failed, on which file, and what to do."""
    import errno
    where = f": {exc.filename}" if exc.filename else ""
    what = exc.strerror or str(exc)
    if exc.errno == errno.ENOSPC:
        return (f"{what}{where}; free some space and run again (a run's log keeps every whole step: "
                "--resume continues it)")
    return f"{what}{where}; check that the path exists, is of the right kind and is writable"


class EngineAborted(Exception):
    """llama_decode stopped at an abort request (Engine.abort; native/abort.c): not an error, the
    daemon taking the machine back mid-member. The KV memory holds a partial batch, so the caller
    clears it (Engine.weights_changed does) before decoding again."""
