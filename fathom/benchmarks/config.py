"""Settings only the benchmarks (and the tests and training tools above them) read: where the judged datasets are.

``FATHOM_DATA_DIR`` (default ``../shared/data`` beside the checkout, BEIR layout: scifact, cacm, docs/). The
serving process never reads it, so it is not part of the service's settings.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

_REPO_ROOT = Path(__file__).resolve().parents[2]


class BenchmarkSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FATHOM_", env_nested_delimiter="__", extra="ignore")

    data_dir: Path = Field(_REPO_ROOT.parent / "shared" / "data", description="Judged datasets (BEIR layout)")


@lru_cache(maxsize=1)
def get_benchmark_settings() -> BenchmarkSettings:
    return BenchmarkSettings()


def data_dir() -> Path:
    """The judged datasets' folder (``FATHOM_DATA_DIR``)."""
    return get_benchmark_settings().data_dir
