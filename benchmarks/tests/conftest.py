"""The wing's tests run with the library's test fixtures: the shared datasets through ``PML_RELAXED_DATA`` and a
seeded torch before every test (imported from ``tests/conftest.py``, not copied)."""

from tests.conftest import _seed  # noqa: F401  (an autouse fixture: importing it here applies it to the wing)
