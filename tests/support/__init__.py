"""Test helpers shared by the stacwatchd test suite.

``tests.support.pg``      throwaway PostgreSQL + PostGIS + pgstac clusters, and
                          the ``pg_cluster`` / ``pgstac_db`` / ``pg_cluster_factory``
                          pytest fixtures.
``tests.support.stacapi`` a real stac-fastapi-pgstac server under uvicorn, and
                          the ``stac_api`` pytest fixture.
``state_v1.sql``          the state schema of the first version, for migration tests.

Both fixture modules are meant to be loaded from ``tests/conftest.py`` with
``pytest_plugins = ["support.pg", "support.stacapi"]`` after putting ``tests/``
on ``sys.path`` (see the module docstrings).
"""
