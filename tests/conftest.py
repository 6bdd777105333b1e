"""Fixtures shared by every test directory."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.servers import ServerProcess


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true", help="also run long robustness and soak tests")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="long run: pass --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """Start members of either kind: ``start_server("synod", "--max-txn-ops", "4")``."""
    started: list[ServerProcess] = []

    def start(kind: str, *extra_args: str) -> ServerProcess:
        server = ServerProcess(kind, tmp_path / f"{kind}{len(started)}", extra_args=list(extra_args))
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.kill()


@pytest.fixture
def synod(start_server: Callable[..., ServerProcess]) -> ServerProcess:
    """A fresh single-member synod."""
    return start_server("synod")


@pytest.fixture
def etcd(start_server: Callable[..., ServerProcess]) -> ServerProcess:
    """A fresh single-member real etcd 3.4."""
    return start_server("etcd")


@pytest.fixture(params=["synod", "etcd"])
def any_server(request: pytest.FixtureRequest, start_server: Callable[..., ServerProcess]) -> ServerProcess:
    """The same test against synod and against a real etcd."""
    return start_server(request.param)
