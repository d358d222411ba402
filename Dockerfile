# One image for every job; TRADEFLOW_FLOW picks the flow (a bytewax import string).
#
#   docker build -t tradeflow-job .                                  # python:3.11-slim
#   docker build --build-arg BASE=tradeflow-base:bookworm \
#       --secret id=pip_cert,src=/etc/ssl/certs/ca-certificates.crt -t tradeflow-job .
#
# BASE: any image with Python 3.11 and its venv module (deploy/base/build-base.sh makes
# one with debootstrap, no registry needed). LOCK picks what is installed, at the exact
# versions and hashes of the lock: requirements-job-kafka.lock (default: the base and
# the kafka extra, what a job on Kafka needs), requirements-job.lock (plus the fluss
# extra: pyfluss and pyarrow) or requirements-tools.lock (plus the report and console
# stack: the tools image). The pip_cert secret is a CA bundle for a
# TLS-intercepting proxy between the build and the package index; it is mounted for
# the pip run only, never stored in a layer.
ARG BASE=python:3.11-slim

FROM ${BASE} AS build
ARG LOCK=requirements-job-kafka.lock
RUN python3 -m venv /opt/venv
COPY requirements-job-kafka.lock requirements-job.lock requirements-tools.lock /src/
RUN --mount=type=secret,id=pip_cert \
    if [ -s /run/secrets/pip_cert ]; then export PIP_CERT=/run/secrets/pip_cert; fi; \
    /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check --require-hashes -r "/src/$LOCK"
COPY pyproject.toml README.md /src/
COPY schemas /src/schemas
COPY connectors /src/connectors
COPY operators /src/operators
COPY flows /src/flows
COPY tradeflow /src/tradeflow
RUN --mount=type=secret,id=pip_cert \
    if [ -s /run/secrets/pip_cert ]; then export PIP_CERT=/run/secrets/pip_cert; fi; \
    /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check --no-deps /src
# What no job loads: test suites, C headers and sources, pyarrow's Flight and S3
# libraries (pyfluss reads and writes Arrow batches in memory), pip and setuptools.
# The import check proves what the jobs import still loads.
RUN cd /opt/venv/lib/python3.11/site-packages \
    && rm -rf pip setuptools pandas/tests numpy/*/tests numpy/tests pyarrow/tests pyarrow/include \
        pyarrow/src pyarrow/libarrow_flight.so* pyarrow/_flight*.so pyarrow/libarrow_s3.so* pyarrow/_s3fs*.so \
    && find . \( -name '*.pyx' -o -name '*.pxd' -o -name '*.pxi' -o -name '*.h' -o -name '*.cc' \) -delete \
    && find /opt/venv -name __pycache__ -prune -exec rm -rf {} + \
    && /opt/venv/bin/python -c "import importlib.util as u; import pandas, bytewax, confluent_kafka, \
flows.indicators, flows.strategy, flows.portfolio_risk, flows.execution; \
u.find_spec('fluss') and __import__('fluss') and __import__('pyarrow.compute')"

FROM ${BASE}
# /recovery: where compose and k8s mount the recovery stores (a new volume takes this owner)
RUN useradd --create-home --uid 10001 tradeflow && mkdir /recovery && chown tradeflow /recovery
COPY --from=build /opt/venv /opt/venv
COPY deploy/entrypoint.sh /usr/local/bin/tradeflow-entrypoint
USER tradeflow
WORKDIR /home/tradeflow
ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    TRADEFLOW_FLOW="flows.indicators:build_flow()" \
    TRADEFLOW_DATA_DIR=/home/tradeflow/data \
    TRADEFLOW_METRICS_PORT=9100 \
    PYTHONUNBUFFERED=1
EXPOSE 9100
# healthy while the job serves its metrics (tools runs without TRADEFLOW_METRICS_PORT: no check)
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD python -c "import os, urllib.request as u; p = os.environ.get('TRADEFLOW_METRICS_PORT'); \
p and u.urlopen('http://127.0.0.1:%s/metrics' % p, timeout=2)"
ENTRYPOINT ["tradeflow-entrypoint"]
