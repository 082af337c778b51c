"""Webhook sources: each turns one helpdesk's call-completed webhook into a CallEvent.

A new helpdesk is one new module here (its config, verify, parse) plus one line in SOURCES.
"""

from connectors.sources.base import EventError, SignatureError, Source, SourceConfig
from connectors.sources.generic import GenericSource

SOURCES: dict[str, Source] = {s.name: s for s in (GenericSource(),)}

__all__ = ["SOURCES", "EventError", "SignatureError", "Source", "SourceConfig"]
