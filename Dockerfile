# syntax=docker/dockerfile:1
# Build: docker build -t receiver .
# Run:   docker run -p 8000:8000 -e RECEIVER_WEBHOOK_SECRET=... -v receiver-data:/var/lib/receiver receiver

# The build stage installs the exact versions of uv.lock (uv: docs/operations.md, "The image").
# --locked refuses a lock that no longer matches pyproject.toml instead of resolving anew.
FROM python:3.11-slim AS build
RUN pip install --no-cache-dir uv==0.13.9
ENV UV_PROJECT_ENVIRONMENT=/opt/receiver \
    UV_PYTHON_DOWNLOADS=never \
    UV_LINK_MODE=copy \
    UV_COMPILE_BYTECODE=1
WORKDIR /src
COPY pyproject.toml uv.lock README.md rules.yaml ./
COPY receiver ./receiver
RUN uv sync --locked --no-editable --no-cache --extra postgres

FROM python:3.11-slim
RUN groupadd --system --gid 10001 receiver \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/receiver --create-home receiver
COPY --from=build /opt/receiver /opt/receiver
COPY rules.yaml /etc/receiver/rules.yaml
ENV PATH="/opt/receiver/bin:$PATH" \
    RECEIVER_HOST=0.0.0.0 \
    RECEIVER_PORT=8000 \
    RECEIVER_DATABASE_URL=sqlite:////var/lib/receiver/receiver.db \
    RECEIVER_LOG_FORMAT=json \
    RECEIVER_WATCH_RULES=false
# Numeric, so that Kubernetes runAsNonRoot can verify it (hadolint DL3066).
USER 10001:10001
WORKDIR /var/lib/receiver
VOLUME ["/var/lib/receiver"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s \
    CMD ["python", "-c", "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status == 200 else 1)"]
ENTRYPOINT ["receiver"]
CMD ["serve", "--rules", "/etc/receiver/rules.yaml"]
