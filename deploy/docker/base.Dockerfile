# syntax=docker/dockerfile:1
# The image every Elmo service starts from: Python 3.11, the project's pinned dependencies with a
# CPU-only torch, the models that ship inside those PyPI packages, and the project itself.
# Build context: the repository root. Each services/<name>/Dockerfile adds its command on top of
# it; skaffold builds this image first and hands it to them as the build argument BASE_IMAGE.
#   docker build -f deploy/docker/base.Dockerfile -t elmo-base .
# Stages: `runtime` (the default, last) and `dev` (skaffold's dev profile: the sources are owned by
# the service user and the service restarts when `skaffold dev` syncs a changed .py file).

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS base
ARG APP_UID=10001
ENV PATH=/opt/elmo/venv/bin:$PATH \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
RUN python -m venv /opt/elmo/venv \
 && groupadd --system --gid "${APP_UID}" elmo \
 && useradd --system --uid "${APP_UID}" --gid "${APP_UID}" --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin elmo
WORKDIR /app

# Dependencies first, from pyproject's pins, so a source change reuses this layer. torch comes from
# the PyTorch CPU index: its 2.x.y+cpu wheel satisfies the pin 2.x.y without the CUDA libraries.
COPY pyproject.toml ./
RUN --mount=type=cache,target=/root/.cache/pip \
    python -c "import tomllib; deps = tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']; open('/tmp/requirements.txt', 'w').write('\n'.join(deps) + '\n')" \
 && grep '^torch==' /tmp/requirements.txt > /tmp/torch.txt \
 && pip install --no-deps --index-url https://download.pytorch.org/whl/cpu -r /tmp/torch.txt \
 && pip install -r /tmp/requirements.txt \
 && rm /tmp/requirements.txt /tmp/torch.txt

# The project, installed in place (editable), so the same tree serves `python -m services.<name>`,
# the `elmo` command and, in dev, the files skaffold syncs. deploy/local/kafka/pom.xml only marks
# the repository root for `elmo train` (elmo.local.stack_settings.find_repo_root).
COPY README.md ./
COPY deploy/local/kafka/pom.xml deploy/local/kafka/pom.xml
COPY shared shared
COPY services services
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install --no-deps -e . \
 && python -m compileall -q shared services

# Models are read from installed packages, never a hub; caches and temporary files go to /tmp (an
# emptyDir in a pod: the root file system is read-only there).
ENV HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    HOME=/tmp \
    ELMO_HTTP_HOST=0.0.0.0 \
    ELMO_HTTP_PORT=8080 \
    ELMO_MODEL_STORE=/var/lib/elmo/model-store
USER ${APP_UID}:${APP_UID}
EXPOSE 8080

FROM base AS dev
ARG APP_UID=10001
USER 0:0
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install watchfiles==1.3.0 \
 && chown -R "${APP_UID}:${APP_UID}" /app
USER ${APP_UID}:${APP_UID}
# Runs the service's command (the CMD of services/<name>/Dockerfile) and restarts it when a .py
# file under shared/ or services/ changes.
ENTRYPOINT ["/bin/sh", "-c", "exec watchfiles --filter python \"$*\" /app/shared /app/services", "--"]

FROM base AS runtime
