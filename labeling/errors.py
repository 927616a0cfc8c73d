"""Errors a caller can show to a person as they are."""


class RLHFError(Exception):
    """Base class: the message is meant for the user."""


class NotFound(RLHFError):
    pass


class PermissionDenied(RLHFError):
    pass


class InvalidInput(RLHFError):
    pass


class Conflict(RLHFError):
    pass
