"""Charts drawn on the server as SVG (no script, no CDN). The call page's emotion timeline (no script, no CDN): one
lane per speaker, each classified window a box coloured by its emotion, as strong as the
model was confident, and the windows a rule used outlined. Each box names its nine scores
(hover or keyboard focus) and carries its start, so a click moves the player there. The
emotions' and roles' names are in the page's language (plugin/web/terms.py); the codes stay."""

from __future__ import annotations

from typing import Any

from plugin.core.transcript import quote_time
from plugin.web.terms import EMOTIONS, ROLES, name

WIDTH = 1000  # the SVG's own units; it scales to the page
COLORS = {  # readable on white, told apart without relying on red/green alone (labels say it too)
    "angry": "#c62828", "disgusted": "#6a1b9a", "fearful": "#4e342e", "happy": "#2e7d32", "neutral": "#757575",
    "other": "#455a64", "sad": "#1565c0", "surprised": "#ef6c00", "unknown": "#9e9e9e",
}
LANE_ORDER = ("customer", "agent", "mixed")


def lanes(call: dict[str, Any]) -> dict[str, Any]:
    """What call.html draws: the duration and one lane per role, each with its boxes."""
    segments = call.get("segments") or []
    duration = max([call.get("duration_s") or 0.0] + [s["end"] for s in segments]) or 1.0
    used = {(round(a, 2), round(b, 2)) for alert in call.get("alerts") or [] for a, b in alert.get("matched") or []}
    by_role: dict[str, list[dict[str, Any]]] = {}
    for s in segments:
        scores = s.get("scores") or {}
        by_role.setdefault(s["role"], []).append({
            "start": s["start"], "end": s["end"], "label": s["label"], "name": name(EMOTIONS, s["label"]),
            "confidence": s["confidence"],
            "x": round(s["start"] / duration * WIDTH, 2),
            "w": max(round((s["end"] - s["start"]) / duration * WIDTH, 2), 1.0),
            "color": COLORS.get(s["label"], "#9e9e9e"),
            "opacity": round(0.25 + 0.75 * max(0.0, min(1.0, s["confidence"])), 3),
            "used": (round(s["start"], 2), round(s["end"], 2)) in used,
            "scores": ", ".join(f"{name(EMOTIONS, k)} {v:.2f}"
                                for k, v in sorted(scores.items(), key=lambda kv: -kv[1])),
        })
    order = sorted(by_role, key=lambda r: (LANE_ORDER.index(r) if r in LANE_ORDER else len(LANE_ORDER), r))
    return {"duration": duration, "width": WIDTH,
            "lanes": [{"role": r, "name": name(ROLES, r), "boxes": by_role[r]} for r in order],
            "colors": COLORS, "legend": [(name(EMOTIONS, label), color) for label, color in COLORS.items()]}


def clock(seconds: float) -> str:
    """"02:13", "1:02:13" past an hour: as WeCom messages quote a moment."""
    return quote_time(seconds)


def trend(calls: list[dict[str, Any]], width: int = WIDTH, height: int = 200) -> dict[str, Any]:
    """A customer's negative share per call over time (oldest left), for customer.html's
    SVG: points at their time, a line through them; calls with nothing classified are left out."""
    shown = sorted((c for c in calls if c["negative_share"] is not None), key=lambda c: (c["received_at"], c["id"]))
    if not shown:
        return {"points": [], "line": "", "width": width, "height": height}
    t0, t1 = shown[0]["received_at"], shown[-1]["received_at"]
    span = (t1 - t0).total_seconds()
    pad, top, bottom = 20, 10, height - 20
    points = []
    for i, c in enumerate(shown):
        if span:
            frac = (c["received_at"] - t0).total_seconds() / span
        else:  # all at one moment: side by side
            frac = 0.5 if len(shown) == 1 else i / (len(shown) - 1)
        share = c["negative_share"]
        points.append({"x": round(pad + frac * (width - 2 * pad), 1), "y": round(bottom - share * (bottom - top), 1),
                       "share": share, "id": c["id"], "received_at": c["received_at"],
                       "color": "#c62828" if share >= 0.5 else "#ef6c00" if share >= 0.2 else "#757575"})
    return {"points": points, "line": " ".join(f"{p['x']},{p['y']}" for p in points), "width": width,
            "height": height, "top": top, "bottom": bottom}
