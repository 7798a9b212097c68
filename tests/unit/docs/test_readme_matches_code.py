"""The README's tables are written by hand; these checks keep them from drifting from the code."""

from pathlib import Path

from elmo.contracts.topics import CHAIN_TOPICS
from elmo.runtime.settings import RuntimeSettings, settings_table

README = (Path(__file__).resolve().parents[3] / "README.md").read_text()


def test_every_setting_is_documented_with_its_default():
    for variable, default, _ in settings_table(RuntimeSettings):
        assert f"| `{variable}` | {f'`{default}`' if default else ''} |" in README, variable


def test_every_topic_is_documented():
    for topic in CHAIN_TOPICS:
        assert f"| `{topic.name}` |" in README, topic.name


def test_the_two_commands_are_near_the_top():
    head = README[:1500]
    assert "make demo" in head and "make test" in head
