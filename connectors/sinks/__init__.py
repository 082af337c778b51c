"""Sinks: where fired rules write back. A new CRM or chat tool is one new module here
(its config model, render, send) plus one line in SINK_TYPES."""

from connectors.sinks.base import SendResult, Sink, SinkConfig
from connectors.sinks.rest import RestSink
from connectors.sinks.wecom_robot import WeComRobotSink

SINK_TYPES: dict[str, type[Sink]] = {cls.kind: cls for cls in (RestSink, WeComRobotSink)}


def build_sinks(configs: dict[str, SinkConfig]) -> dict[str, Sink]:
    return {name: SINK_TYPES[cfg.type](name, cfg) for name, cfg in configs.items()}


__all__ = ["SINK_TYPES", "SendResult", "Sink", "SinkConfig", "build_sinks"]
