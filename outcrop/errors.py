"""One domain error tree. No HTTP here: each wire adapter renders these in its own envelope."""

from __future__ import annotations


class OutcropError(Exception):
    """Base of every error the core raises on purpose."""

    def __init__(self, message: str, **details: object) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class Invalid(OutcropError):
    """The request is malformed or names something impossible."""


class PayloadTooLarge(Invalid):
    """The request body is over the configured limit."""


class NotFound(OutcropError):
    """The named resource does not exist (or belongs to another account)."""


class Conflict(OutcropError):
    """The resource exists already or is in a state that forbids the operation."""


class Throttled(OutcropError):
    """Over a rate or concurrency limit."""


class AccessDenied(OutcropError):
    """Authenticated, but not allowed."""


class AuthenticationFailed(OutcropError):
    """The caller could not be authenticated; `code` is the AWS error code to report."""

    code = "UnrecognizedClientException"


class UnrecognizedClient(AuthenticationFailed):
    code = "UnrecognizedClientException"


class InvalidSignature(AuthenticationFailed):
    code = "InvalidSignatureException"


class IncompleteSignature(AuthenticationFailed):
    code = "IncompleteSignatureException"


class ModelNotReady(OutcropError):
    """The model exists but cannot serve now (failed to load, pack missing)."""


class ModelError(OutcropError):
    """The model failed while handling a valid request."""


class ModelTimeout(ModelError):
    """The model took too long."""


class Unavailable(OutcropError):
    """A dependency (an upstream server) is unreachable."""
