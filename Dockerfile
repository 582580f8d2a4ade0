# churnguard consumer service. Build: docker build -t churnguard .
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY src ./src
COPY features ./features
COPY models ./models
RUN pip install --no-cache-dir . \
 && useradd --system --uid 10001 --home-dir /app churnguard
ENV CHURNGUARD_SPEC_DIR=/app/features
USER 10001
EXPOSE 9108
# SIGTERM -> stop polling, flush, checkpoint, commit, close (see docs/operations.md)
ENTRYPOINT ["churnguard", "serve"]
CMD ["--config", "/etc/churnguard/churnguard.toml"]
