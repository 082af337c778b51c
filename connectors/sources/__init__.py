"""Webhook sources: each turns one helpdesk's call-completed webhook into a CallEvent.

A new helpdesk is one new module here (its config, verify, parse) plus one line in SOURCES.
"""

from connectors.sources.base import (Accepted, Answer, EventError, Inbound, Received, SignatureError, Source,
                                     SourceConfig)
from connectors.sources.aircall import AircallSource
from connectors.sources.alibaba import AlibabaSource
from connectors.sources.generic import GenericSource
from connectors.sources.tccc import TcccSource
from connectors.sources.twilio import TwilioSource
from connectors.sources.zendesk import ZendeskSource

SOURCES: dict[str, Source] = {s.name: s for s in (GenericSource(), TwilioSource(), TcccSource(), AlibabaSource(),
                                                  AircallSource(), ZendeskSource())}

__all__ = ["SOURCES", "Accepted", "Answer", "EventError", "Inbound", "Received", "SignatureError", "Source",
           "SourceConfig"]
