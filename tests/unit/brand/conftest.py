import json
import shutil
from pathlib import Path

import pytest

from elmo.brand.catalog import DEFAULT_BRAND_DIR


@pytest.fixture
def brand_copy(tmp_path: Path) -> Path:
    """A writable copy of the demo brand's three files."""
    directory = tmp_path / "brand"
    directory.mkdir()
    for name in ("catalog.json", "knowledge.json", "brand.json"):
        shutil.copy(DEFAULT_BRAND_DIR / name, directory / name)
    return directory


def edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))
