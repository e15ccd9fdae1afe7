"""A wire-protocol conformance suite that is data, not code.

Scenarios are JSON files (rpc/protos/conformance/scenarios, described in
rpc/protos/conformance/README.md) that say which frames to send to a server
and which frames it must answer with; any language can run them. This
package is the Python runner:

    onedrive-rpc conformance tcp://127.0.0.1:5000
"""
from __future__ import annotations

from ..testing import echo_pb2  # noqa: F401 - registers onedrive_rpc.testing.Msg for payload_msg
from .match import Mismatch, ScenarioError
from .runner import DEFAULT_WITHIN_MS, Result, client_tls, run_all, run_scenario
from .scenarios import SECRET, SERVERS, Scenario, load, load_all, scenario_dir, select

__all__ = ["Scenario", "Result", "Mismatch", "ScenarioError", "DEFAULT_WITHIN_MS", "SECRET", "SERVERS",
           "load", "load_all", "scenario_dir", "select", "run_scenario", "run_all", "client_tls"]
