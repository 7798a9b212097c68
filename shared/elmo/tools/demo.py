"""`elmo demo`: play the scripted conversations through the running chain and print each turn.

Every conversation is played twice, as typed text and as synthesised voice notes (espeak-ng ->
Ogg/Opus), each time as a new conversation. Each customer message goes to `elmo.inbound` and the
demo waits for its reply on `elmo.replies`, then prints what the chain understood and answered.
"""

from __future__ import annotations

import json
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from elmo.tools.conversation import ChainClient, Turn, describe_turn

DEFAULT_SCRIPT = Path("tests/e2e/fixtures/conversations.json")


@dataclass
class ScriptedTurn:
    say: str
    expect: dict
    speak: str | None = None  # the words of the voice note, when they differ from the typed form


@dataclass
class Conversation:
    name: str
    channel: str
    user_id: str
    turns: list[ScriptedTurn]


@dataclass
class PlayedConversation:
    conversation: Conversation
    conversation_id: str
    voice: bool
    turns: list[Turn] = field(default_factory=list)

    @property
    def unanswered(self) -> int:
        return sum(1 for t in self.turns if t.reply is None)


def load_script(path: Path = DEFAULT_SCRIPT) -> list[Conversation]:
    data = json.loads(path.read_text())
    return [
        Conversation(
            name=c["name"],
            channel=c["channel"],
            user_id=c["user_id"],
            turns=[
                ScriptedTurn(t["say"], {k: v for k, v in t.items() if k not in ("say", "speak")}, t.get("speak"))
                for t in c["turns"]
            ],
        )
        for c in data["conversations"]
    ]


def play_conversation(
    client: ChainClient, conversation: Conversation, voice: bool, echo: Callable[[str], None] = lambda _: None
) -> PlayedConversation:
    run = uuid.uuid4().hex[:8]
    played = PlayedConversation(conversation, f"{conversation.user_id}-{run}", voice)
    # A fresh user per run, so a replayed demo does not inherit the last run's purchases.
    user_id = f"{conversation.user_id}-{run}"
    echo(f"=== {conversation.name} ({'voice notes' if voice else 'text'}, {conversation.channel}) ===")
    for scripted in conversation.turns:
        if voice:
            turn = client.speak(played.conversation_id, user_id, conversation.channel, scripted.speak or scripted.say)
        else:
            turn = client.say(played.conversation_id, user_id, conversation.channel, scripted.say)
        played.turns.append(turn)
        for line in describe_turn(turn):
            echo(line)
    echo("")
    return played


def wait_until_ready(ports: dict[str, int], timeout_s: float, echo: Callable[[str], None] = print) -> list[str]:
    """Poll each service's /readyz until all answer 200; returns the services still not ready."""
    deadline = time.monotonic() + timeout_s
    waiting = dict(ports)
    while waiting and time.monotonic() < deadline:
        for name, port in list(waiting.items()):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as response:
                    if response.status == 200:
                        del waiting[name]
            except OSError:
                pass
        if waiting:
            time.sleep(0.5)
    if waiting:
        echo(f"not ready after {timeout_s:.0f} s: {', '.join(waiting)}")
    return list(waiting)
