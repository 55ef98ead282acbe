"""The teaching tools' tests run the real ./server and ./client: build them first (`make`)."""

import pytest

from tools import programs


@pytest.fixture(scope="session", autouse=True)
def built() -> None:
    for program in ("server", "client"):
        if not (programs.ROOT / program).exists():
            pytest.fail(f"./{program} is missing: run `make` first")
