"""Sinks: where fired rules write back. A new CRM or chat tool is one new module here
(its config model, render, send) plus one line in SINK_TYPES.

Records (rule actions): rest, zendesk, hubspot, wecom_customer_tag. Messages to people
(routing.yaml receivers only, ``Sink.messaging``): wecom_robot, wecom_app."""

from connectors.sinks.base import Limit, SendResult, Sink, SinkConfig
from connectors.sinks.hubspot import HubSpotSink
from connectors.sinks.rest import RestSink
from connectors.sinks.wecom_app import WeComAppSink
from connectors.sinks.wecom_robot import WeComRobotSink
from connectors.sinks.wecom_tags import WeComTagSink
from connectors.sinks.zendesk import ZendeskSink

SINK_TYPES: dict[str, type[Sink]] = {cls.kind: cls for cls in (RestSink, WeComRobotSink, WeComAppSink, ZendeskSink,
                                                                 HubSpotSink, WeComTagSink)}


def build_sinks(configs: dict[str, SinkConfig]) -> dict[str, Sink]:
    return {name: SINK_TYPES[cfg.type](name, cfg) for name, cfg in configs.items()}


__all__ = ["SINK_TYPES", "Limit", "SendResult", "Sink", "SinkConfig", "build_sinks"]
