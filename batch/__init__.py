"""plena-batch: regression sets and design-space sweeps of PLENA programs on Dask distributed.

    plena-batch run MANIFEST.toml --out DIR [--scheduler tcp://HOST:8786] [--resume]
    plena-batch compare BASE_DIR NEW_DIR [--threshold 1%]

Data flows one way: manifest (batch.manifest) -> jobs -> Dask tasks (batch.job.run_task on the
workers, batch.executor on the client) -> result rows (batch.results) -> comparisons (batch.compare).
"""

from .manifest import ManifestError, Plan, build_plan, load_manifest  # noqa: F401
