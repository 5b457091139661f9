"""rft's error types and exit statuses: each message names the file, field, line or sample at fault."""

EXIT_ERROR = 1
"""An unexpected error (a bug, or a failure rft does not know): a traceback."""
EXIT_USAGE = 2
"""A problem the user can fix, told in one message (bad recipe, data, model or reward, a busy or taken
``output.dir``), or a run that stopped on too many reward failures or non-finite steps (after saving a checkpoint)."""
EXIT_INTERRUPTED = 75
"""EX_TEMPFAIL: the run was interrupted (SIGTERM, SIGINT) and saved a checkpoint; run it again with
``--resume latest`` (schedulers: requeue)."""


class RftError(Exception):
    """Base class: a problem the user can fix, shown without a traceback by the CLI (exit status 2)."""

    exit_status = EXIT_USAGE


class RecipeError(RftError):
    """A recipe that cannot be read or validated."""


class DataError(RftError):
    """A dataset file, row, box or image that cannot be used."""
