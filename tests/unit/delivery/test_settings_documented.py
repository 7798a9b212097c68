"""docs/edges.md lists delivery's own settings by hand; this keeps the table from drifting from the code."""

from pathlib import Path

from elmo.runtime.settings import RuntimeSettings, settings_table
from services.delivery.settings import DeliverySettings

EDGES = (Path(__file__).resolve().parents[3] / "docs" / "edges.md").read_text()
DELIVERY_SECTION = EDGES[EDGES.index("### delivery") :]


def test_every_delivery_setting_of_its_own_is_documented_with_its_default():
    inherited = {variable for variable, _, _ in settings_table(RuntimeSettings)}
    own = [row for row in settings_table(DeliverySettings) if row[0] not in inherited]
    assert len(own) == 12
    for variable, default, _ in own:
        assert f"| `{variable}` | {f'`{default}`' if default else ''} |" in DELIVERY_SECTION, variable
