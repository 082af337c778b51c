"""Plain data passed between the parts: sources -> plugin -> rules -> sinks.

Nothing here touches the database or the network, so connectors and rules can
depend on it freely.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

# emotion2vec+ labels, in model output order (FunASR gives them as "生气/angry").
EMOTIONS = (
    "angry", "disgusted", "fearful", "happy", "neutral", "other", "sad", "surprised", "unknown",
)


# An alert's severity, mildest first: rules set it, routing and the dashboard rank by it.
SEVERITIES = ("info", "warning", "critical")
Severity = Literal["info", "warning", "critical"]


def severity_rank(severity: str) -> int:
    return SEVERITIES.index(severity) if severity in SEVERITIES else -1


def normalize_label(token: str) -> str:
    """'生气/angry' -> 'angry'; '<unk>' -> 'unknown'."""
    token = token.split("/")[-1].strip().lower()
    return "unknown" if token in ("<unk>", "unk", "") else token


# Participants' files one call may gather (a transfer adds one). The door keeps no more
# (plugin/flow/intake.py) and the worker analyses no more (plugin/flow/recording.py).
MAX_PARTS = 8


@dataclass(frozen=True)
class Recording:
    """One participant's own recording (a contact center that records each party to a file
    of its own): whose voice it is, where it is, and the vendor's id for it."""

    url: str
    role: str  # "agent" or "customer"
    id: str | None = None  # the vendor's recording id: the same file pushed twice is one part


@dataclass(frozen=True)
class CallEvent:
    """A call-completed event, normalized from whichever helpdesk sent it."""

    source: str
    call_id: str
    recording_url: str
    customer_id: str | None = None
    customer_phone: str | None = None
    agent_id: str | None = None
    queue: str | None = None  # the helpdesk's queue; rules pick the call's scenario with it
    ticket_id: str | None = None
    # channel index -> role, e.g. {0: "agent", 1: "customer"}; None = mixed mono
    channel_roles: dict[int, str] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)  # fields the source does not know
    raw: dict[str, Any] = field(default_factory=dict)  # the event as received, kept for audit
    # One file per participant (then recording_url is the first of them); empty for one file
    # holding the whole call, whose channels channel_roles names.
    recordings: tuple[Recording, ...] = ()


@dataclass(frozen=True)
class Credential:
    """Authentication for one recording host, sent to that host only: never to another one,
    not even when the recording server redirects there (plugin/audio/fetch.py)."""

    host: str  # lowercase host name or address, as in the URL
    port: int | None  # None: the default ports only (80 for http, 443 for https)
    headers: dict[str, str]  # e.g. {"Authorization": "Basic ..."}

    def applies_to(self, host: str, port: int) -> bool:
        """Whether a request to ``host``:``port`` may carry it: the same host, and the
        configured port, or without one the default ports (80, 443) only."""
        return host.lower().strip("[]") == self.host and (port == self.port if self.port else port in (80, 443))

    def __repr__(self) -> str:  # never print the secret (logs, tracebacks)
        return f"Credential(host={self.host!r}, port={self.port!r}, headers=<{len(self.headers)} hidden>)"


@dataclass(frozen=True)
class Download:
    """One file to download for a call, with what to authenticate with. A source returns
    one for a whole-call recording, or one per participant (``role`` set)."""

    url: str
    credential: Credential | None = None
    role: str | None = None  # the participant this file holds, for one-file-per-party layouts
    # A file `callmood import` copied under <data_dir>/imports (plugin/flow/batch_import.py):
    # read from there instead of downloading ``url``. Set only for calls of source "import",
    # from the call's content hash; the worker refuses any path outside that folder.
    path: str | None = None


# SenseVoice's audio events (its tags <|Laughter|>, <|Cry|>...), as stored and as rules name them.
EVENTS = ("speech", "bgm", "applause", "laughter", "cry", "sneeze", "breath", "cough")


@dataclass(frozen=True)
class SegmentResult:
    """emotion2vec's verdict on one window of one channel, and what was said in it
    (the transcript fields stay None where no speech recognizer ran)."""

    start: float  # seconds from the start of the call
    end: float
    channel: int
    role: str  # "customer", "agent" or "mixed"
    label: str
    confidence: float
    scores: dict[str, float]
    # The words, digit runs that look like phone, ID-card or bank-card numbers masked
    # (plugin/core/transcript.py); "" when the recognizer heard no words.
    text: str | None = None
    language: str | None = None  # SenseVoice's language id: "zh", "en", "yue", "ja", "ko", "nospeech"
    tag_emotion: str | None = None  # SenseVoice's own emotion tag, in EMOTIONS' names
    events: tuple[str, ...] = ()  # SenseVoice's audio events (EVENTS) but "speech"
    normalized: str | None = None  # ``text`` in the form keyword rules match (transcript.normalize)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class RoleSummary:
    role: str
    segments: int
    seconds: float
    label_counts: dict[str, int]
    top_label: str | None
    top_share: float
    mean_confidence: float


@dataclass(frozen=True)
class CallAnalysis:
    """All segment results of a call and their per-role summaries."""

    duration: float
    segments: list[SegmentResult]
    roles: dict[str, RoleSummary]
    emotion: str | None  # the call's verdict: majority label over all segments
    confidence: float  # mean confidence of the segments carrying that label

    def summary(self) -> dict:
        return {
            "duration": round(self.duration, 3),
            "emotion": self.emotion,
            "confidence": round(self.confidence, 4),
            "segments": len(self.segments),
            "roles": {k: asdict(v) for k, v in self.roles.items()},
        }


@dataclass(frozen=True)
class Action:
    """One outbound action a fired rule asks for: which sink, with what parameters."""

    sink: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Alert:
    """A rule that fired on a call, with the evidence supervisors need."""

    rule: str
    scenario: str
    severity: str
    role: str
    emotions: list[str]
    share: float  # share of the role's segments that matched
    confidence: float  # mean confidence of the matching segments
    matched: list[tuple[float, float]]  # (start, end) of matching segments
    summary: str
    actions: list[Action] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)  # the rule's labels (routing matches on them)
    # The measures behind the verdict, e.g. {"share": 0.4, "longest_run_s": 12.0, "rise": 0.5}
    details: dict[str, Any] = field(default_factory=dict)
    # What was said in the segments that fired, in call order (at most MAX_QUOTES):
    # [{"start": 133.2, "end": 136.2, "role": "customer", "text": "我要退款"}]; empty without transcripts.
    quotes: list[dict[str, Any]] = field(default_factory=list)


# Quotes an alert carries at most: a message quotes what fired, not the whole call.
MAX_QUOTES = 5
# Where an alert's stored row keeps its quotes (in ``details``: no column of their own). The
# pipeline writes them there (plugin/flow/context.py); retention and forget remove them.
QUOTES_KEY = "quotes"


def summarize(segments: list[SegmentResult], duration: float) -> CallAnalysis:
    """A call's analysis from its segment results: per-role summaries and the verdict."""
    roles: dict[str, RoleSummary] = {}
    for role in sorted({s.role for s in segments}):
        mine = [s for s in segments if s.role == role]
        counts = Counter(s.label for s in mine)
        top, n = counts.most_common(1)[0]
        roles[role] = RoleSummary(
            role=role, segments=len(mine), seconds=round(sum(s.end - s.start for s in mine), 3),
            label_counts=dict(counts), top_label=top, top_share=round(n / len(mine), 4),
            mean_confidence=round(sum(s.confidence for s in mine) / len(mine), 4))
    # The call's verdict is the customer's when we can hear them apart, else the whole call's
    # (the tutorial's vote over 3 s pieces).
    judged = [s for s in segments if s.role == "customer"] or segments
    emotion, confidence = None, 0.0
    if judged:
        emotion = Counter(s.label for s in judged).most_common(1)[0][0]
        winners = [s.confidence for s in judged if s.label == emotion]
        confidence = sum(winners) / len(winners)
    return CallAnalysis(duration=duration, segments=segments, roles=roles,
                        emotion=emotion, confidence=round(confidence, 4))
