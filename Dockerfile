# One image for the API, the Dagster webserver and the Dagster daemon (compose picks the command).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    DAGSTER_HOME=/app/dagster_home/production

RUN apt-get update \
    && apt-get install -y --no-install-recommends curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 10001 fwa

WORKDIR /app
COPY pyproject.toml constraints.txt README.md ./
COPY fwa_pipeline ./fwa_pipeline
COPY fwa_api ./fwa_api
COPY migrations ./migrations
COPY dagster_home/production ./dagster_home/production
COPY workspace.yaml ./
# Editable so Alembic finds migrations/ beside the packages, as in a checkout; Bokeh serves the
# Dask scheduler's dashboard when this image runs one.
RUN pip install -c constraints.txt -e '.[dashboard]' \
    && mkdir -p /app/data /app/dagster_home/production/storage \
    && chown -R fwa:fwa /app/data /app/dagster_home/production

USER fwa
EXPOSE 8000 3000
CMD ["fwa", "serve", "--host", "0.0.0.0", "--port", "8000"]
