# churnguard consumer service. Build: docker build -t churnguard .
# The wheel is built in the full image (a C compiler for Cython): the per-record path is
# compiled (setup.py, CHURNGUARD_COMPILE=1): the same decisions, 11 % fewer instructions;
# the service logs and exports how many modules it runs compiled (churnguard_compiled_modules).
FROM python:3.11 AS wheel
WORKDIR /build
COPY pyproject.toml setup.py README.md MANIFEST.in ./
COPY src ./src
# the wheel carries the feature specs and the default model inside the package (setup.py)
COPY features ./features
COPY models/default ./models/default
RUN CHURNGUARD_COMPILE=1 pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY --from=wheel /wheels /wheels
# the forests' numba kernels, compiled here once (~10 s) into a cache every start loads
# (~0.3 s); numba needs the directory writable even to read it: the Kubernetes manifest
# copies it to a writable emptyDir (docs/operations.md, "Compiled kernels"). numba keys
# its cache by CPU: compiled for a generic x86-64 the cache serves whatever CPU the node
# has (the scorer measured as fast, the same bits), instead of a recompile on each start
ENV NUMBA_CACHE_DIR=/app/.numba-cache NUMBA_CPU_NAME=generic
RUN pip install --no-cache-dir /wheels/*.whl \
 && python -c "from churnguard.scoring.detectors.oif import warm_kernels; warm_kernels()" \
 && useradd --system --uid 10001 --home-dir /app churnguard \
 && chown -R churnguard /app/.numba-cache
USER 10001
EXPOSE 9108
# SIGTERM -> stop polling, flush, checkpoint, commit, close (see docs/operations.md)
ENTRYPOINT ["churnguard", "serve"]
CMD ["--config", "/etc/churnguard/churnguard.toml"]
