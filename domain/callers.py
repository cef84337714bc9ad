"""Who is calling: the identity the API authenticates and order entry acts for."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args


@dataclass(frozen=True)
class Caller:
    """Who is calling: one users row (one token)."""

    id: int
    name: str
    role: str
    # The one channel a `channel` token acts for; None for every other role.
    channel: str | None = None

    @property
    def scope(self) -> str:
        """Whose Idempotency-Keys these are: keys are per caller, never global. A channel
        token's are its channel's (a rotated token keeps the keys of requests in flight);
        a person's are that user's. Distinct from a signed webhook's `channel:NAME`."""
        if self.role == "channel" and self.channel is not None:
            return f"token-channel:{self.channel}"
        return f"user:{self.id}"


Role = Literal[
    "admin",
    "sales",
    "credit_controller",
    "sales_manager",
    "director",
    "ops",
    "channel",
    "warehouse",
]


ROLES: tuple[str, ...] = get_args(Role)
