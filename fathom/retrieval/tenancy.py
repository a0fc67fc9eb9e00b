"""Tenant identity.

Every read and write below the API takes a :class:`Tenant`, never a bare string:
a search request cannot be constructed without one (see ``store.base``), so
tenant isolation is enforced by construction rather than by convention.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_TENANT_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")


class InvalidTenant(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Tenant:
    """A validated tenant id: lowercase letters, digits, ``_`` and ``-``; at most 63 chars.

    The id is also used in collection names and folder names, hence the strict
    alphabet. A full match: ``"acme\\n"`` is refused (a ``$`` anchor would
    have accepted the trailing newline) wherever a tenant id comes from - the
    keys file, the tenants file, ``--tenant``, ``X-Fathom-Tenant``.
    """

    id: str

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or _TENANT_RE.fullmatch(self.id) is None:
            raise InvalidTenant(f"invalid tenant id {self.id!r}: use [a-z0-9][a-z0-9_-]{{0,62}}")

    def __str__(self) -> str:
        return self.id


def tenant_arg(value: str) -> str:
    """``--tenant`` on the command line: checked before any state is opened (an argparse ``type``)."""
    import argparse

    try:
        return Tenant(value).id
    except InvalidTenant as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
