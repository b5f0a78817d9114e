"""Who is calling: the verified identity of the current RPC, kept in a context variable."""

from __future__ import annotations

import contextvars
import dataclasses
import enum

from kiln.common import errors


class Role(enum.StrEnum):
    """A principal's role; the strings are what tokens carry in the `role` claim."""

    USER = "user"
    ADMIN = "admin"


@dataclasses.dataclass(frozen=True)
class Principal:
    """A caller whose access token was verified."""

    user_id: str
    email: str
    role: Role
    token_id: str
    issued_at: int = 0
    """The token's `iat` (epoch seconds), checked against the account's tokens_not_before."""

    @property
    def is_admin(self) -> bool:
        """Whether the caller may act on everyone's resources."""
        return self.role is Role.ADMIN


_current: contextvars.ContextVar[Principal | None] = contextvars.ContextVar(
    "kiln_principal", default=None
)


def set_current(principal: Principal | None) -> contextvars.Token[Principal | None]:
    """Binds the principal for the rest of the current RPC."""
    return _current.set(principal)


def current() -> Principal:
    """The verified caller; UNAUTHENTICATED when the RPC carried no valid token."""
    principal = _current.get()
    if principal is None:
        raise errors.Unauthenticated("a valid access token is required", reason="TOKEN_MISSING")
    return principal


def current_or_none() -> Principal | None:
    """The verified caller, or None for public methods."""
    return _current.get()


def require_admin() -> Principal:
    """The caller, who must be an admin; PERMISSION_DENIED otherwise."""
    principal = current()
    if not principal.is_admin:
        raise errors.PermissionDenied(
            "this call needs the admin role", reason="ADMIN_ROLE_REQUIRED"
        )
    return principal
