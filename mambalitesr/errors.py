"""Errors the user can act on.

Every entry point turns a :class:`UserError` into one line on stderr and a
non-zero exit, without a traceback. Anything else is a bug and keeps its traceback.
"""


class UserError(Exception):
    """Bad input or a missing dependency, explained in words the user can act on."""

    exit_code = 2


class MissingDependency(UserError):
    """A package, library, device or file the command needs is not available."""

    exit_code = 3
