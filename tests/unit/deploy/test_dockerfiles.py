"""Every Dockerfile lints clean with hadolint (rules and ignores: .hadolint.yaml, if any)."""

from __future__ import annotations

import re
import subprocess

import pytest

from elmo.tools.k8s_manifests import APP_UID
from tests.unit.deploy.conftest import REPO, hadolint_binary

SECRET_NAME = re.compile(r"SECRET|TOKEN|PASSWORD|API_KEY", re.IGNORECASE)

DOCKERFILES = sorted([REPO / "deploy/docker/base.Dockerfile", *(REPO / "services").glob("*/Dockerfile")])


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: str(p.relative_to(REPO)))
def test_dockerfile_lints_clean(dockerfile):
    hadolint = hadolint_binary()
    if hadolint is None:
        pytest.skip("hadolint is missing: it comes with the test extra (pip install -e '.[test]')")
    # --failure-threshold info: even hadolint's info-level findings fail the test.
    result = subprocess.run(
        [str(hadolint), "--no-color", "--failure-threshold", "info", str(dockerfile)], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_images_run_as_the_non_root_user_the_manifests_expect():
    base = (REPO / "deploy/docker/base.Dockerfile").read_text()
    assert f"ARG APP_UID={APP_UID}" in base
    for dockerfile in DOCKERFILES:
        users = [line.split()[1] for line in dockerfile.read_text().splitlines() if line.startswith("USER ")]
        if users:
            assert users[-1] in (f"{APP_UID}:{APP_UID}", "${APP_UID}:${APP_UID}"), dockerfile


def test_no_secret_is_baked_into_an_image():
    # Secrets reach pods from the Secret elmo-secrets at run time, never through ENV or ARG.
    for dockerfile in DOCKERFILES:
        for line in dockerfile.read_text().splitlines():
            if line.startswith(("ENV ", "ARG ")):
                assert not SECRET_NAME.search(line), (dockerfile, line)


def test_the_build_context_holds_what_the_images_install():
    ignored = (REPO / ".dockerignore").read_text().splitlines()
    assert "*" in ignored, "the build context is an allow-list"
    for needed in ("!pyproject.toml", "!README.md", "!shared/", "!services/", "!deploy/local/kafka/pom.xml"):
        assert needed in ignored, needed
    assert (REPO / "deploy/local/kafka/pom.xml").is_file()
