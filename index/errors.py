"""The project's error types. A ``BrainrankError`` carries a message a user can act on."""


class BrainrankError(Exception):
    """Base class: bad input, bad config or a broken artifact, reported without a traceback."""


class InputError(BrainrankError):
    """A file or value supplied by the user is malformed; the message names file and line."""


class IndexMismatchError(BrainrankError):
    """An index, model or vector does not belong with the artifact it is used with."""
