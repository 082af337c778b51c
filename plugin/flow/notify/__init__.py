"""Supervisor notifications: alerts routed by routing.yaml through small stages
(stages.py), and open notifications turned into deliveries when due (flush.py)."""

from plugin.flow.notify.flush import flush_due, flush_pending, notification_context
from plugin.flow.notify.stages import STAGES, route_alerts

__all__ = ["STAGES", "flush_due", "flush_pending", "notification_context", "route_alerts"]
