"""Shared fixtures: one tiny demo world per test session, and the real data folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fluxmap.demo import build_world
from fluxmap.testing import tiny_demo_config

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory: pytest.TempPathFactory):
    """A small demo world (Europe, 1 deg, 2020) generated once for the whole session."""
    return build_world(tmp_path_factory.mktemp("world"), tiny_demo_config())


@pytest.fixture(scope="session")
def demo_catalog(tiny_world):
    from fluxmap.catalog import builtin_catalog, load_catalog

    return load_catalog(builtin_catalog("demo"), **tiny_world.catalog_params)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data beside the checkout; skipped when absent unless FLUXMAP_REQUIRE_REALDATA=1."""
    if not SHARED_DATA.is_dir():
        if os.environ.get("FLUXMAP_REQUIRE_REALDATA") == "1":
            pytest.fail(f"FLUXMAP_REQUIRE_REALDATA=1 but the real data folder {SHARED_DATA} is missing")
        pytest.skip(f"real data folder {SHARED_DATA} not found")
    return SHARED_DATA


@pytest.fixture
def tls_files(tmp_path: Path) -> dict[str, str]:
    """A self-signed certificate (its own CA) and its key as files: the three TLS settings of a
    cluster config."""
    from distributed.security import Security

    sec = Security.temporary()
    files = {"tls_ca_file": sec.tls_ca_file, "tls_cert": sec.tls_client_cert, "tls_key": sec.tls_client_key}
    out = {}
    for name, pem in files.items():
        path = tmp_path / f"{name}.pem"
        path.write_text(pem)
        path.chmod(0o600)
        out[name] = str(path)
    return out
