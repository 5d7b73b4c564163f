"""The pure parts of `verify --trove`: which RPC version and config delivery
an agent release gets, which agent/image combinations Trove cannot drive,
and the agent log lines a failed call is shown with."""

import pytest

from factory import compat, conformance


@pytest.mark.parametrize("release, cap", [((13, 0), "1.0"), ((14, 0), "1.1"), ((22, 1), "1.1"),
                                          ((23, 0), "1.2"), ((26, 0), "latest"), (None, "latest")])
def test_rpc_cap_follows_the_agent_release(release, cap):
    assert conformance.rpc_cap(release) == cap


def test_config_delivery_follows_the_agent_era():
    assert conformance.default_delivery((13, 0)) == "files"
    assert conformance.default_delivery((26, 0)) == "cloud-config"


def test_a_13x_agent_on_python_311_is_named_with_its_reason():
    found = compat.problems((13, 0), "debian", "bookworm", "redis")
    assert len(found) == 1 and "Python below 3.10" in found[0] and "3.11" in found[0]


def test_a_13x_agent_on_bullseye_with_redis_has_no_known_problem():
    assert compat.problems((13, 0), "debian", "bullseye", "redis") == []


def test_a_13x_agent_cannot_see_a_mariadb_that_runs_as_mariadbd():
    ok, why = compat.native_releases("debian", ("bullseye", "bookworm"), "mariadb")
    assert ok == [] and "mariadbd" in why


def test_a_13x_agent_cannot_run_postgresql_anywhere():
    ok, why = compat.native_releases("debian", ("bullseye", "bookworm"), "postgresql")
    assert ok == [] and "wal_level" in why


def test_current_agents_have_no_native_rules():
    assert compat.problems((26, 0), "debian", "bookworm", "postgresql") == []


def test_agent_log_tail_prefers_errors():
    console = "\n".join([
        "FACTORY-VERIFY agent-log: 2026 INFO trove starting",
        "FACTORY-VERIFY agent-log: 2026 ERROR trove.guestagent prepare failed: boom",
        "noise",
    ])
    tail = conformance.agent_log_tail(console)
    assert "prepare failed: boom" in tail and "starting" not in tail


def test_agent_of_refuses_a_runtime_agent():
    man = {"target": {"datastore": "mariadb"}, "guest_agent": {"source": "runtime"}}
    assert "development" in conformance.agent_of(man)[2]


def test_agent_of_reads_the_release():
    man = {"target": {"datastore": "mariadb"}, "guest_agent": {"source": "pypi", "version": "13.0.1"}}
    assert conformance.agent_of(man) == ("13.0.1", (13, 0), None)
