"""The reader's name, normalised in one place: every record (a case kept, a review, an audit event, a site-wide
change) keeps it stripped; an action that must be signed refuses an empty name (`named`); where a signature is not
needed (keeping a case, an export), an empty one is recorded as UNSIGNED (`signed`)."""

from __future__ import annotations

from .errors import CXRError

UNSIGNED = "unsigned"


def signed(name: str | None) -> str:
    """The name as a record keeps it: stripped, or UNSIGNED where none was given."""
    return (name or "").strip() or UNSIGNED


def named(name: str | None, message: str) -> str:
    """The name, stripped, for an action that must be signed; CXRError(`message`) without one (UNSIGNED, what a
    request without a reader carries, is no name)."""
    name = (name or "").strip()
    if not name or name == UNSIGNED:
        raise CXRError(message)
    return name
