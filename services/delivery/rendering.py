"""A reply as the text a platform shows: the reply, then one line per recommendation with its link."""

from __future__ import annotations

from elmo.contracts.events import Recommendation, Reply

ELLIPSIS = "…"


def recommendation_line(recommendation: Recommendation) -> str:
    return f"• {recommendation.name}: {recommendation.url}" if recommendation.url else f"• {recommendation.name}"


def render(reply: Reply, max_chars: int) -> str:
    """At most `max_chars`: the reply's text first (cut if it must be), then the lines that fit."""
    text = reply.text.strip()
    if len(text) > max_chars:
        return text[: max_chars - 1].rstrip() + ELLIPSIS
    lines = [recommendation_line(r) for r in reply.recommendations]
    rendered = text
    for index, line in enumerate(lines):
        candidate = f"{rendered}\n\n{line}" if index == 0 else f"{rendered}\n{line}"
        if len(candidate) > max_chars:
            break
        rendered = candidate
    return rendered
