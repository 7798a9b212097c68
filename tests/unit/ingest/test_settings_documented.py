"""docs/edges.md lists ingest's settings by hand; this keeps the table from drifting from the code."""

from pathlib import Path

from elmo.runtime.settings import settings_table
from services.ingest.settings import IngestSettings

EDGES = (Path(__file__).resolve().parents[3] / "docs" / "edges.md").read_text()


def test_every_ingest_setting_is_documented_with_its_default():
    for variable, default, _ in settings_table(IngestSettings):
        assert f"| `{variable}` | {f'`{default}`' if default else ''} |" in EDGES, variable
