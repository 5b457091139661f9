"""rft's error types: each message names the file, field, line or sample at fault."""


class RftError(Exception):
    """Base class: a problem the user can fix, shown without a traceback by the CLI."""


class RecipeError(RftError):
    """A recipe that cannot be read or validated."""


class DataError(RftError):
    """A dataset file, row, box or image that cannot be used."""
