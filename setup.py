"""The optional compiled build: ``CHURNGUARD_COMPILE=1 pip install .`` compiles the modules
every record goes through with Cython, as they are (no C types added, the same code, the same
alerts), for ~11 % fewer instructions on that path (docs/benchmarks.md, "compiled build").

Everything else is in ``pyproject.toml``. Without the variable (what ``make venv`` does, an
editable install for development) nothing is compiled: an edited ``.py`` takes effect at once
instead of hiding behind a stale extension module next to it.
"""

from __future__ import annotations

import os

from setuptools import setup
from setuptools.command.build_py import build_py

# the per-record path (decode and adapt, entity state, windows, feature rows, the service's
# loop) and the scorer's own Python; the running service logs and exports how many of
# churnguard's modules it runs compiled (churnguard.compiled_modules)
COMPILED = [
    "src/churnguard/pipeline.py",
    "src/churnguard/ingest/__init__.py",
    "src/churnguard/ingest/cloudtrail.py",
    "src/churnguard/ingest/common.py",
    "src/churnguard/ingest/envelopes.py",
    "src/churnguard/ingest/events.py",
    "src/churnguard/ingest/falco.py",
    "src/churnguard/ingest/flows.py",
    "src/churnguard/ingest/k8s_audit.py",
    "src/churnguard/ingest/ordering.py",
    "src/churnguard/ingest/tetragon.py",
    "src/churnguard/ingest/watermark.py",
    "src/churnguard/profiling/entities.py",
    "src/churnguard/profiling/features.py",
    "src/churnguard/profiling/floods.py",
    "src/churnguard/profiling/profile.py",
    "src/churnguard/profiling/schedule.py",
    "src/churnguard/profiling/spec.py",
    "src/churnguard/scoring/baselines.py",
    "src/churnguard/scoring/campaigns.py",
    "src/churnguard/scoring/guards.py",
    "src/churnguard/scoring/learning.py",
    "src/churnguard/scoring/lives.py",
    "src/churnguard/scoring/routine.py",
    "src/churnguard/scoring/rules.py",
    "src/churnguard/scoring/scorer.py",
    "src/churnguard/scoring/thresholds.py",
    "src/churnguard/scoring/detectors/_util.py",
    "src/churnguard/scoring/detectors/batch.py",
    "src/churnguard/scoring/detectors/grouped.py",
    "src/churnguard/scoring/detectors/oif.py",
    "src/churnguard/scoring/detectors/pool.py",
    "src/churnguard/alerts/alert.py",
    "src/churnguard/service/kafka.py",
    "src/churnguard/service/publisher.py",
    "src/churnguard/service/route.py",
    "src/churnguard/service/shard.py",
]


def extensions() -> list:
    if os.environ.get("CHURNGUARD_COMPILE", "0") in ("", "0"):
        return []
    from Cython.Build import cythonize

    return cythonize(
        COMPILED,
        # plain Python semantics: annotations stay hints (a ``float`` parameter is not a C
        # double), so the compiled modules decide exactly what the interpreted ones do
        compiler_directives={"language_level": 3, "annotation_typing": False},
        build_dir="build/cython",  # the generated C, out of the source tree
        nthreads=os.cpu_count() or 1,
        quiet=True,
    )


# what a wheel carries inside the package (churnguard/_shipped, found by churnguard.shipped):
# the feature specs and the default model bundle, so an installed service needs no paths set
SHIPPED = ["features", "models/default"]


class BuildPyWithShipped(build_py):
    """``build_py`` that also copies the shipped tree into the package of a wheel.

    Not for an editable install: a checkout reads the repository's own directories, which
    ``model build`` rewrites, and a stale copy in ``src`` would hide them.
    """

    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return
        for tree in SHIPPED:
            self.copy_tree(tree, os.path.join(self.build_lib, "churnguard", "_shipped", tree))


setup(ext_modules=extensions(), cmdclass={"build_py": BuildPyWithShipped})
