"""Marks on view functions that the gate (gate.py) reads. A view without a mark needs a
``viewer``: a new endpoint is closed without anyone having to remember it.

Put the mark under the route decorator, so the route registers the marked function::

    @bp.post("/webhooks/<source>")
    @public
    @no_csrf
    def receive(source): ...
"""

from __future__ import annotations

from typing import Callable, TypeVar

from plugin.core import roles

View = TypeVar("View", bound=Callable)

PUBLIC = "_callmood_public"
ROLE = "_callmood_role"
NO_CSRF = "_callmood_no_csrf"
BY_LINK = "_callmood_by_link"


def public(view: View) -> View:
    """Anyone may call it, logged in or not (the view decides what to show)."""
    setattr(view, PUBLIC, True)
    return view


def requires(role: str) -> Callable[[View], View]:
    """Only someone with ``role`` or a higher one (plugin/core/roles.py)."""
    roles.check(role)

    def mark(view: View) -> View:
        setattr(view, ROLE, role)
        return view
    return mark


def no_csrf(view: View) -> View:
    """The view proves its requests' origin itself (a signed webhook): no CSRF token."""
    setattr(view, NO_CSRF, True)
    return view


def opens_by_link(view: View) -> View:
    """A GET of one call (its ``call_id`` URL argument) that a signed link (?k=) opens
    without a login, read-only, with a viewer's rights."""
    setattr(view, BY_LINK, True)
    return view


def role_needed(view: Callable) -> str | None:
    """The role a view needs; None when it is public."""
    if getattr(view, PUBLIC, False):
        return None
    return getattr(view, ROLE, "viewer")
