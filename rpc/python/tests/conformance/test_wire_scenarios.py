"""Every scenario of rpc/protos/conformance against the Python server.

Each scenario gets a fresh in-process server on tcp 127.0.0.1 (the
runner's sockets are gevent's, so they share this hub with it); then all of
them run again, one after the other, against one server on a unix socket.
A scenario marked expected_failure is a known deviation of this server from
the spec: it must fail (strict xfail), so the mark goes once the server is
fixed.
"""
from __future__ import annotations

import pytest

import onedrive_rpc as rpc
from onedrive_rpc import conformance
from onedrive_rpc.testing.echo_service import CheckerService, EchoService

SCENARIOS = conformance.load_all()


def _params():
    return [pytest.param(scenario, id=scenario.name,
                         marks=[pytest.mark.xfail(strict=True, reason=scenario.expected_failure)]
                         if scenario.expected_failure else [])
            for scenario in SCENARIOS]


def _target(servers, url, kind, **options):
    """The server a scenario's "server" names (README: The target server)."""
    auth = rpc.SharedSecret(conformance.SECRET) if kind == "echo-secret" else None
    server = servers(url, EchoService(), auth=auth, **options)
    server.add_service(CheckerService())
    return server


@pytest.mark.parametrize("scenario", _params())
def test_scenario(scenario, servers):
    result = conformance.run_scenario(scenario, _target(servers, "tcp://127.0.0.1:0", scenario.server).url)
    assert result.outcome in ("pass", "xpass"), result.message


def test_there_are_scenarios_for_every_part_of_the_spec():
    sections = {s.split(".")[0] for scenario in SCENARIOS for s in scenario.spec}
    assert sections >= {"§3", "§4", "§5", "§7", "§8"}, sections
    assert len(SCENARIOS) >= 20
    assert all(scenario.description and scenario.spec for scenario in SCENARIOS)


@pytest.mark.parametrize("kind", sorted(conformance.SERVERS))
def test_scenarios_leave_a_shared_server_as_they_found_it(tmp_path, servers, kind):
    """The README promises that scenarios may share one server, one after
    the other (as `onedrive-rpc conformance URL` runs them): none leaves a
    task, subscription or consumer behind that changes a later one."""
    server = _target(servers, f"unix://{tmp_path}/echo.sock", kind)
    results, _ = conformance.run_all([s for s in SCENARIOS if s.server == kind], server.url)
    assert results
    failed = [f"{r.name}: {r.outcome}: {r.message}" for r in results if r.outcome not in ("pass", "xfail")]
    assert not failed, "\n".join(failed)


@pytest.mark.parametrize("kind", sorted(conformance.SERVERS))
def test_every_scenario_holds_inside_tls(servers, certificates, kind):
    """tls:// carries the protocol unchanged (spec §2): the same scenarios,
    one after the other, through a TLS stream to one server."""
    server = _target(servers, "tls://127.0.0.1:0", kind,
                     tls=rpc.TLS(certfile=str(certificates / "server.pem")))
    results, _ = conformance.run_all([s for s in SCENARIOS if s.server == kind], server.url,
                                     tls=conformance.client_tls(str(certificates / "ca.pem")))
    assert results
    failed = [f"{r.name}: {r.outcome}: {r.message}" for r in results if r.outcome not in ("pass", "xfail")]
    assert not failed, "\n".join(failed)
