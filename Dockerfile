# One image for every job; TRADEFLOW_FLOW picks the flow (a bytewax import string).
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY schemas schemas
COPY connectors connectors
COPY operators operators
COPY flows flows
COPY tradeflow tradeflow
RUN pip install --no-cache-dir --prefix=/install .

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
