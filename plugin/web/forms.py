"""Request bodies the API accepts, validated at the door: the first problem is answered
as 400 ``{"error": "field: what", "field": "field"}``."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, StrictBool, StrictInt, ValidationError, field_validator, model_validator

from plugin.core.validation import StrictModel, first_problem
from plugin.web.converters import ROW_ID_MAX
from rules.yamlfile import parse_duration

# Supervisors' verdicts on alerts, and the spellings people type for them.
VERDICTS = {"correct": "correct", "false_alarm": "false_alarm", "false-alarm": "false_alarm",
            "false alarm": "false_alarm", "falsealarm": "false_alarm"}


class BadRequest(ValueError):
    def __init__(self, field: str | None, message: str):
        super().__init__(message)
        self.field, self.message = field, message


class FeedbackBody(StrictModel):
    verdict: str | None = Field(None, validate_default=True)
    by: str | None = Field(None, max_length=255)
    note: str | None = Field(None, max_length=4000)

    @field_validator("verdict", mode="before")
    @classmethod
    def _verdict(cls, v: Any) -> str:
        if v is None:
            raise ValueError("is required ('correct' or 'false_alarm')")
        if not isinstance(v, str) or v.strip().lower() not in VERDICTS:
            raise ValueError(f"must be 'correct' or 'false_alarm', not {repr(v)[:40]}")
        return VERDICTS[v.strip().lower()]

    @field_validator("by", "note")
    @classmethod
    def _blank_is_none(cls, v: str | None) -> str | None:
        return (v.strip() or None) if v is not None else None

    @field_validator("by")
    @classmethod
    def _one_line(cls, v: str | None) -> str | None:
        # A name: it is logged and shown on one line, so it may not start another one.
        if v is not None and any(not c.isprintable() for c in v):
            raise ValueError("must be one line of printable characters")
        return v


class RerunBody(StrictModel):
    """POST /api/calls/rerun: ``{"ids": [...]}`` or ``{"failed": true, "since": "1d"}``."""

    ids: list[Annotated[StrictInt, Field(ge=1, le=ROW_ID_MAX)]] | None = Field(None, min_length=1, max_length=1000)
    failed: StrictBool = False
    since: str | None = Field(None, max_length=32)  # how far back the failures go (default 1d)
    limit: StrictInt = Field(1000, ge=1, le=1000)  # with failed: at most this many calls, oldest first

    @model_validator(mode="after")
    def _one_way(self) -> RerunBody:
        if bool(self.ids) == self.failed:
            raise ValueError("give ids, or failed: true (with since); one or the other")
        if self.since is not None and not self.failed:
            raise ValueError("since goes with failed: true")
        try:
            seconds = parse_duration(self.since or "1d")
        except ValueError as exc:
            raise ValueError(f"since: {exc}") from None
        if seconds <= 0:
            raise ValueError(f"since: {self.since!r} must be longer than zero")
        return self


def parse(model: type[StrictModel], body: Any) -> dict[str, Any]:
    """``body`` (parsed JSON, or None when it was not JSON) validated by ``model``."""
    if not isinstance(body, dict):
        raise BadRequest(None, "body must be a JSON object")
    try:
        return model.model_validate(body).model_dump()
    except ValidationError as err:
        where, what = first_problem(err)
        field = where[:64]
        if not field:  # a rule across fields (RerunBody): the message names them
            raise BadRequest(None, what) from None
        raise BadRequest(field, f"{field}: {what}") from None


MAX_SINCE_S = 366 * 86400  # how far back a requeue may reach


class RetryDeliveriesBody(StrictModel):
    """POST /api/deliveries/retry: ``{"ids": [...]}`` or ``{"status": "dead", "since": "1d"}``."""

    ids: list[Annotated[StrictInt, Field(ge=1, le=ROW_ID_MAX)]] | None = Field(None, min_length=1, max_length=1000)
    status: Literal["dead", "pending"] | None = None  # pending: send those waiting out a backoff now
    since: str | None = Field(None, max_length=32)  # with status: created within this long (default 1d)

    @model_validator(mode="after")
    def _one_way(self) -> RetryDeliveriesBody:
        if bool(self.ids) == (self.status is not None):
            raise ValueError("give ids, or status: dead (with since); one or the other")
        if self.since is not None and self.status is None:
            raise ValueError("since goes with status")
        try:
            seconds = parse_duration(self.since or "1d")
        except ValueError as exc:
            raise ValueError(f"since: {exc}") from None
        if not 0 < seconds <= MAX_SINCE_S:
            raise ValueError(f"since: {self.since!r} must be longer than zero and at most 366 days")
        return self
