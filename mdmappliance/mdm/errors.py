"""Errors of the device channel, each with the HTTP status a device gets for it.

One table maps them to statuses; the device listener turns them into replies. 401 is kept
for devices this server is not managing, because a device deletes its MDM profile on 401.
"""

from __future__ import annotations


class MDMError(Exception):
    """A device request refused; ``str(e)`` is the one-line reason that is logged."""

    status = 400
    #: Write an audit event for this refusal (identity problems are security events).
    audited = False


class BadMessage(MDMError):
    """The body is not a well-formed message of the protocol."""

    status = 400


class NotManaged(MDMError):
    """Not a device this server manages (unknown, checked out, retired): the device should
    remove its MDM profile."""

    status = 401


class IdentityRefused(MDMError):
    """The presented identity is not the one bound to this UDID (or has no valid signature)."""

    status = 403
    audited = True


class NotFound(MDMError):
    status = 404


class MethodNotAllowed(MDMError):
    status = 405
