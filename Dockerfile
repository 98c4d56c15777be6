# The autotag API and indexer, for compose.yaml. Elasticsearch runs in its own container.
FROM python:3.11-slim
COPY --from=ghcr.io/astral-sh/uv:0.13.9 /uv /usr/local/bin/uv
WORKDIR /app
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project
COPY search ./search
COPY store ./store
COPY indexer ./indexer
COPY evaluation ./evaluation
COPY api ./api
COPY cli ./cli
RUN uv sync --frozen --no-dev
ENV PATH=/app/.venv/bin:$PATH
EXPOSE 8000
CMD ["autotag", "up", "--host", "0.0.0.0", "--port", "8000"]
