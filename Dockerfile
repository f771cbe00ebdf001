# Image of the fleetstream services of docker-compose.yml (setup, api, worker, mqtt); not used by
# `make run`/`make test`. The console script `fleetstream` is on PATH; every process reads its
# settings from FLEET_* variables (schemas/settings.py). No .env is copied in (.dockerignore).
FROM python:3.11-slim
# ffmpeg: RTSP frame capture in the API (api/media/rtsp.py); gcc: the linker Rust needs
RUN apt-get update && apt-get install -y --no-install-recommends ffmpeg gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
# The services run as this unprivileged user. The worker's data folder (Faust's table stores) is
# made here and owned by it: the named volume docker-compose.yml mounts on it starts as a copy of
# it, owner included, so the worker can write there. Everything else the user writes is /tmp.
ENV FLEET_WORKER__DATADIR=/var/lib/fleetstream/faust
RUN useradd --system --create-home --home-dir /home/fleet fleet \
    && mkdir -p /var/lib/fleetstream/faust \
    && chown -R fleet:fleet /var/lib/fleetstream
RUN pip install --no-cache-dir 'uv>=0.5'
# Rust for the compiled stream core (native/, built by maturin during `uv sync`).
COPY --from=rust:1.95-slim /usr/local/cargo /usr/local/cargo
COPY --from=rust:1.95-slim /usr/local/rustup /usr/local/rustup
ENV RUSTUP_HOME=/usr/local/rustup CARGO_HOME=/usr/local/cargo PATH="/usr/local/cargo/bin:$PATH"
WORKDIR /app
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy PYTHONUNBUFFERED=1
# The locked dependencies first (a layer that outlives code changes), then the project.
COPY pyproject.toml uv.lock ./
RUN uv sync --frozen --no-dev --no-install-project --no-install-package fleetstream-native
COPY . .
RUN uv sync --frozen --no-dev --no-editable
ENV PATH="/app/.venv/bin:$PATH"
USER fleet
# API (FLEET_API__PORT) and the worker's web server (FLEET_WORKER__WEB_PORT)
EXPOSE 8000 6066
