"""`elmo train recommender` as a person runs it: one summary line, the whole report in a file;
`--json` for scripts. (nlu and sentiment print the same way, through the same helper.)"""

import json
from pathlib import Path

from typer.testing import CliRunner

from elmo.cli import app

runner = CliRunner()


def test_training_prints_one_readable_line_and_saves_the_whole_report(tmp_path: Path) -> None:
    result = runner.invoke(app, ["train", "recommender", "--users", "300", "--store", str(tmp_path)])
    assert result.exit_code == 0, result.output
    (line,) = result.output.strip().splitlines()
    assert line.startswith("recommender-als ") and "hit-rate@10" in line and "popularity" in line
    saved = Path(line.rsplit("full report in ", 1)[1])
    report = json.loads(saved.read_text())
    assert saved.parent == tmp_path / "reports" and report["path"].startswith(str(tmp_path))
    assert 0 <= report["hit_rate_at_10_als"] <= 1

    as_json = runner.invoke(app, ["train", "recommender", "--users", "300", "--store", str(tmp_path), "--json"])
    assert as_json.exit_code == 0, as_json.output
    assert json.loads(as_json.output)["hit_rate_at_10_als"] == report["hit_rate_at_10_als"]  # same data and seed
