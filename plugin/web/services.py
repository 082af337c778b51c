"""Where blueprints get the shared services, the way Flask's tutorial app gets its
database from ``db.py``: the app factory stores them, blueprints ask here."""

from __future__ import annotations

from flask import current_app

from plugin.services import Services

KEY = "callmood"


def get_services() -> Services:
    return current_app.extensions[KEY]
