"""Shared pytest fixtures: built programs and throwaway PostgreSQL clusters."""

import os

import pytest

from nodes import NodeCluster
from pgcluster import PgCluster


@pytest.fixture(scope="session")
def build_dir():
    d = os.environ.get("MFA_BUILD_DIR")
    if not d or not os.path.isdir(d):
        pytest.fail("MFA_BUILD_DIR is not set to the build directory; run through ctest "
                    "(./tests/run)")
    return d


@pytest.fixture(scope="session")
def tool(build_dir):
    """Path of a test tool built under tests/tools."""
    def path(name):
        p = os.path.join(build_dir, "tests", "tools", name)
        assert os.access(p, os.X_OK), f"{p} is not built"
        return p
    return path


@pytest.fixture
def pg_primary():
    """A single throwaway PostgreSQL 15 primary."""
    cluster = PgCluster(standbys=0)
    yield cluster
    cluster.close()


@pytest.fixture
def pg_with_standby():
    """A primary with one streaming hot standby."""
    cluster = PgCluster(standbys=1)
    yield cluster
    cluster.close()


@pytest.fixture
def node_cluster_factory(tool, build_dir):
    """Makes NodeClusters (extra `node` settings as libconfig text); closes them after."""
    made = []

    def make(node_conf="", start=True):
        cluster = NodeCluster(os.path.join(build_dir, "node", "mfa-node"),
                              tool("mfa-schema-apply"), node_conf=node_conf)
        made.append(cluster)
        return cluster.start() if start else cluster
    yield make
    for cluster in made:
        cluster.close()


@pytest.fixture
def node_cluster(node_cluster_factory):
    """mfa-node n1 on a primary and n2 on its streaming standby, both running."""
    return node_cluster_factory()
