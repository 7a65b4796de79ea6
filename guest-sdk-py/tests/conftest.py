import pytest

from reagent_sdk import testing


@pytest.fixture(autouse=True)
def fresh_host():
    """Every test starts with an empty mock host."""
    testing.install()
    yield
    testing.take()
