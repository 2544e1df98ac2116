# cml-bot in a container: for GitLab CI jobs (`image: ghcr.io/OWNER/cml-bot:0.1.0`, see docs/gitlab.md)
# and for anyone without a Python toolchain. The release workflow (.github/workflows/release.yml) builds
# it from the same wheel it publishes to PyPI, so the image holds exactly the released package:
#   python -m build --wheel && docker build -t cml-bot .
ARG PYTHON_VERSION=3.12

# --- build: a virtualenv with the wheel and its dependencies (pip and its caches stay in this stage)
FROM python:${PYTHON_VERSION}-slim AS build
COPY dist/*.whl /tmp/dist/
RUN python -m venv /opt/cml-bot \
    && /opt/cml-bot/bin/python -m pip install --no-cache-dir --disable-pip-version-check /tmp/dist/*.whl

# --- runtime: the virtualenv, git, and a user without root
FROM python:${PYTHON_VERSION}-slim AS runtime
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# git: cml-bot reads the baseline's files at the merge-base from the repository's history. Its version
# is the base image's Debian release's (with its security fixes), hence no pin. The CI runner clones
# the repository as another user: safe.directory lets git read it anyway.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends git \
    && rm -rf /var/lib/apt/lists/* \
    && git config --system --add safe.directory '*' \
    && groupadd --gid 10001 cml-bot \
    && useradd --create-home --uid 10001 --gid 10001 --shell /bin/bash cml-bot
COPY --from=build /opt/cml-bot /opt/cml-bot
ENV PATH=/opt/cml-bot/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    MPLBACKEND=Agg
# By number, so a runtime that insists on a non-root user (runAsNonRoot) can check it.
USER 10001:10001
WORKDIR /home/cml-bot
# Build matplotlib's font cache once, here, instead of in every job.
RUN python -c "import matplotlib.font_manager" && cml-bot --version
# No ENTRYPOINT: GitLab runs a job's script with the image's shell, and an entrypoint would have to be
# overridden in every job. `docker run IMAGE` shows the help; `docker run IMAGE cml-bot run ...` works.
CMD ["cml-bot", "--help"]
