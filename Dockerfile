# Image for the api/worker services of docker-compose.yml (not used by `make run`/`make test`).
FROM python:3.11-slim
# ffmpeg: RTSP frame capture in the API (api/media/rtsp.py)
RUN apt-get update && apt-get install -y --no-install-recommends ffmpeg \
    && rm -rf /var/lib/apt/lists/*
RUN pip install --no-cache-dir 'uv>=0.5' && useradd --system fleet
WORKDIR /app
COPY . .
RUN uv sync --frozen --no-dev --no-editable
USER fleet
ENV PATH="/app/.venv/bin:$PATH"
