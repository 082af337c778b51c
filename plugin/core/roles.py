"""Who may do what: the three roles, each allowed what the one below it may, and more.

- viewer: reads calls, alerts and notifications, phone numbers masked
- supervisor: also sees phone numbers and gives feedback on alerts
- admin: also users, API tokens, the detail of /health and delivery payloads
"""

from __future__ import annotations

ROLES = ("viewer", "supervisor", "admin")


def check(role: str) -> str:
    """``role`` if it is one of ROLES; ValueError naming the known ones otherwise."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r} (one of {', '.join(ROLES)})")
    return role


def at_least(role: str | None, needed: str) -> bool:
    """Whether ``role`` may do what ``needed`` may (an unknown role may do nothing)."""
    return role in ROLES and ROLES.index(role) >= ROLES.index(check(needed))


def from_groups(groups: object, mapping: dict[str, str], default: str | None) -> str | None:
    """The role single sign-on gives someone in ``groups`` (a list, or one string of
    comma-separated names): the highest that ``mapping`` gives any of them, else
    ``default`` (None: no role, no entry)."""
    if isinstance(groups, str):
        groups = [g.strip() for g in groups.split(",")]
    if not isinstance(groups, (list, tuple)):
        groups = []
    found = [mapping[g] for g in groups if isinstance(g, str) and g in mapping]
    return max(found, key=ROLES.index) if found else default
