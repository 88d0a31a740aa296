"""Fixtures of the data tests."""

import urllib.error

import pytest

from resnetlab.data import sources


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """No network, no system data, a private cache: tests see only what they write."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("RESNETLAB_DATA", raising=False)
    monkeypatch.setattr(sources, "SYSTEM_ROOTS", ())

    def offline(url, dest):
        raise urllib.error.URLError("network disabled in tests")

    monkeypatch.setattr(sources, "_download_file", offline)
