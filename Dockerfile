# One image for every job; TRADEFLOW_FLOW picks the flow (a bytewax import string).
# It holds what a job needs and nothing else: the base packages and the kafka and fluss
# extras at the exact versions and hashes of requirements-job.lock (`make lock` writes
# it from requirements.lock); not the report stack (matplotlib) nor the dev tools.
FROM python:3.11-slim AS build
WORKDIR /src
COPY requirements-job.lock ./
RUN pip install --no-cache-dir --prefix=/install --require-hashes -r requirements-job.lock
COPY pyproject.toml README.md ./
COPY schemas schemas
COPY connectors connectors
COPY operators operators
COPY flows flows
COPY tradeflow tradeflow
RUN pip install --no-cache-dir --prefix=/install --no-deps .

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 tradeflow
COPY --from=build /install /usr/local
COPY deploy/entrypoint.sh /usr/local/bin/tradeflow-entrypoint
USER tradeflow
WORKDIR /home/tradeflow
ENV TRADEFLOW_FLOW="flows.indicators:build_flow()" \
    TRADEFLOW_DATA_DIR=/home/tradeflow/data \
    PYTHONUNBUFFERED=1
ENTRYPOINT ["tradeflow-entrypoint"]
