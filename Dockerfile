# syntax=docker/dockerfile:1
# Build: docker build -t receiver .
# Run:   docker run -p 8000:8000 -e RECEIVER_WEBHOOK_SECRET=... -v receiver-data:/var/lib/receiver receiver

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY receiver ./receiver
RUN python -m venv /opt/receiver && /opt/receiver/bin/pip install --no-cache-dir .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --home-dir /var/lib/receiver --create-home receiver
COPY --from=build /opt/receiver /opt/receiver
COPY rules.yaml /etc/receiver/rules.yaml
ENV PATH="/opt/receiver/bin:$PATH" \
    RECEIVER_HOST=0.0.0.0 \
    RECEIVER_PORT=8000 \
    RECEIVER_DATABASE_URL=sqlite:////var/lib/receiver/receiver.db \
    RECEIVER_LOG_FORMAT=json \
    RECEIVER_WATCH_RULES=false
USER receiver
WORKDIR /var/lib/receiver
VOLUME ["/var/lib/receiver"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s \
    CMD ["python", "-c", "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status == 200 else 1)"]
ENTRYPOINT ["receiver"]
CMD ["serve", "--rules", "/etc/receiver/rules.yaml"]
