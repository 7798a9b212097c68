"""Talking to the running chain through Kafka, as any client would: `elmo chat`, `elmo demo`, e2e tests.

A turn is one inbound event (text, or a voice note as Ogg/Opus) published to `elmo.inbound`; its
reply is the `elmo.replies` event whose `origin_event_id` is the inbound event's id. The reply
carries what the chain understood (transcript, intent, entities, sentiment), so one topic shows it all.
"""

from __future__ import annotations

import base64
import json
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from elmo.contracts import topics
from elmo.contracts.events import INLINE_AUDIO_MAX_BYTES


@dataclass
class Turn:
    said: str  # what the customer typed, or the words spoken in the voice note
    voice: bool
    event_id: str
    reply: dict | None
    latency_ms: float


class ChainClient:
    """Publishes customer turns and waits for their replies."""

    def __init__(self, bootstrap_servers: str, reply_timeout_s: float = 30.0) -> None:
        self.reply_timeout_s = reply_timeout_s
        self.producer = KafkaProducer(bootstrap_servers=bootstrap_servers, acks="all")
        self.consumer = KafkaConsumer(bootstrap_servers=bootstrap_servers, group_id=None, enable_auto_commit=False)
        partitions = [TopicPartition(topics.REPLIES.name, p) for p in self.consumer.partitions_for_topic(topics.REPLIES.name) or ()]
        self.consumer.assign(partitions)
        self.consumer.seek_to_end(*partitions)
        for partition in partitions:
            self.consumer.position(partition)  # resolve "end" now, before anything is sent
        self._early: dict[str, dict] = {}

    def close(self) -> None:
        self.producer.close()
        self.consumer.close()

    def __enter__(self) -> ChainClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def say(self, conversation_id: str, user_id: str, channel: str, text: str) -> Turn:
        return self._send({"text": text}, conversation_id, user_id, channel, said=text, voice=False)

    def send_voice(self, conversation_id: str, user_id: str, channel: str, audio: Path, said: str = "") -> Turn:
        data = audio.read_bytes()
        if len(data) > INLINE_AUDIO_MAX_BYTES:
            raise ValueError(f"{audio} is {len(data)} bytes; inline voice notes are at most {INLINE_AUDIO_MAX_BYTES}")
        mime = {".ogg": "audio/ogg", ".opus": "audio/ogg", ".mp3": "audio/mpeg", ".m4a": "audio/mp4", ".wav": "audio/wav"}
        body = {"audio": {"data_b64": base64.b64encode(data).decode(), "mime_type": mime.get(audio.suffix.lower(), "audio/ogg")}}
        return self._send(body, conversation_id, user_id, channel, said=said or f"[voice note {audio.name}]", voice=True)

    def speak(self, conversation_id: str, user_id: str, channel: str, text: str) -> Turn:
        """`text` as a synthesised voice note (espeak-ng, Ogg/Opus), as a customer would send it."""
        from elmo.tools.test_data import synthesize_speech, to_ogg_opus

        with tempfile.TemporaryDirectory(prefix="elmo-voice-") as folder:
            wav = synthesize_speech(text, Path(folder) / "note.wav")
            ogg = to_ogg_opus(wav, Path(folder) / "note.ogg")
            return self.send_voice(conversation_id, user_id, channel, ogg, said=text)

    def _send(self, body: dict, conversation_id: str, user_id: str, channel: str, said: str, voice: bool) -> Turn:
        event = {
            "event_id": uuid.uuid4().hex,
            "conversation_id": conversation_id,
            "user_id": user_id,
            "channel": channel,
            "created_at": datetime.now(UTC).isoformat(),
            **body,
        }
        started = time.monotonic()
        self.producer.send(topics.INBOUND.name, key=conversation_id.encode(), value=json.dumps(event).encode()).get(timeout=10)
        reply = self._wait_for_reply(event["event_id"])
        return Turn(said, voice, event["event_id"], reply, (time.monotonic() - started) * 1000)

    def _wait_for_reply(self, origin_event_id: str) -> dict | None:
        deadline = time.monotonic() + self.reply_timeout_s
        while origin_event_id not in self._early and time.monotonic() < deadline:
            for records in self.consumer.poll(timeout_ms=100).values():
                for record in records:
                    reply = json.loads(record.value)
                    self._early[reply.get("origin_event_id", "")] = reply
        return self._early.pop(origin_event_id, None)


def describe_turn(turn: Turn) -> Iterator[str]:
    """The lines `elmo chat` and `elmo demo` print for a turn."""
    reply = turn.reply
    kind = "voice" if turn.voice else "text"
    yield f"customer ({kind}): {turn.said}"
    if reply is None:
        yield "  (no reply: is the chain running? `elmo up`)"
        return
    if turn.voice:
        yield f"  transcript: {reply.get('in_reply_to_text')}"
    entities = ", ".join(f"{e['type']}={e.get('normalized') or e['value']}" for e in reply.get("entities", []))
    yield f"  intent: {reply.get('intent')} ({reply.get('intent_confidence') or 0:.2f})   entities: {entities or '-'}"
    yield f"  sentiment: {reply.get('sentiment_label')} ({reply.get('sentiment_score') or 0:+.2f})"
    for rec in reply.get("recommendations", []):
        yield f"  recommended: {rec['name']} (score {rec['score']:.2f}): {rec['reason']}"
    flags = " [handoff to a human]" if reply.get("handoff") else ""
    yield f"elmo [{reply.get('strategy')}]{flags}: {reply['text']}"
    yield f"  ({turn.latency_ms:.0f} ms end to end)"
