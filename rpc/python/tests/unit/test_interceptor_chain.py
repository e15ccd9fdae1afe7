"""The interceptor chain and the Authorizer, with no connection: order,
short-circuits, wrapping, refusals and the hook's own failures (the broker
asking them: test_broker.py)."""
from __future__ import annotations

import logging

import pytest

import onedrive_rpc as rpc
from onedrive_rpc.interceptors import Action, Authorizer, Interception, interception
from onedrive_rpc.testing.echo_pb2 import Msg

ALICE = rpc.Identity("token", "alice")


def action(kind="call", method="/pkg.S/M", target="", **fields):
    return Action(kind, method, target, identity=ALICE, address="test://a", **fields)


def test_interceptors_run_first_to_last_and_unwind_in_reverse():
    log = []

    def step(name):
        def intercept(action, proceed):
            log.append(name + ">")
            result = proceed()
            log.append(name + "<")
            return result + name
        return intercept

    class AsClass(rpc.Interceptor):
        def intercept(self, action, proceed):
            return proceed() + "c"

    chain = Interception([step("a"), step("b"), AsClass()])
    assert chain.run(action(), lambda: "x") == "xcba"
    assert log == ["a>", "b>", "b<", "a<"]


def test_an_interceptor_may_answer_without_going_on():
    ran = []
    chain = Interception([lambda action, proceed: "cached", lambda action, proceed: ran.append(1)])
    assert chain.run(action(), lambda: ran.append(2)) == "cached"
    assert ran == []


def test_no_interceptors_means_no_chain_and_a_non_callable_is_refused():
    assert interception() is None
    assert len(interception([], lambda *args: True)) == 1
    with pytest.raises(TypeError, match="an interceptor is a callable"):
        Interception([42])
    with pytest.raises(TypeError, match="authorize must be a callable"):
        Authorizer("yes")


@pytest.mark.parametrize("kind, method, target, described", [
    ("call", "/pkg.S/M", "", "call /pkg.S/M"),
    ("publish", "/pkg.S/T", "a.b", "publish /pkg.S/T (topic 'a.b')"),
    ("subscribe", "/pkg.S/T", "a.>", "subscribe /pkg.S/T (pattern 'a.>')"),
    ("produce", "/pkg.S/Q", "/pkg.S/Q", "produce /pkg.S/Q"),
    ("listen", "/pkg.S/B", "", "listen /pkg.S/B"),
])
def test_the_authorizer_asks_with_identity_action_method_and_target(
        kind, method, target, described):
    asked = []

    def authorize(*question):
        asked.append(question)
        return False

    with pytest.raises(rpc.RpcError) as denied:
        Authorizer(authorize).intercept(action(kind, method, target), lambda: "ran")
    assert asked == [(ALICE, kind, method, target)]
    assert denied.value.code == rpc.StatusCode.PERMISSION_DENIED
    assert denied.value.message == f"permission denied: token 'alice' may not {described}"
    assert Authorizer(lambda *q: True).intercept(action(kind, method, target),
                                                 lambda: "ran") == "ran"


def test_a_failing_hook_refuses_and_its_own_refusal_passes_unchanged(caplog):
    def broken(*question):
        raise LookupError("policy table missing")

    caplog.set_level(logging.ERROR, logger="onedrive_rpc")
    with pytest.raises(rpc.RpcError) as denied:
        Authorizer(broken).intercept(action(), lambda: "ran")
    assert denied.value.code == rpc.StatusCode.PERMISSION_DENIED
    assert "the authorize hook failed" in caplog.text and "LookupError" in caplog.text

    def expired(*question):
        raise rpc.RpcError(rpc.StatusCode.UNAUTHENTICATED, "token expired")

    with pytest.raises(rpc.RpcError) as refused:
        Authorizer(expired).intercept(action(), lambda: "ran")
    assert (refused.value.code, refused.value.message) == (rpc.StatusCode.UNAUTHENTICATED,
                                                           "token expired")


def test_the_request_is_decoded_once_and_only_when_asked():
    decoded = []

    class Counting:
        DESCRIPTOR = Msg.DESCRIPTOR

        @staticmethod
        def FromString(payload):
            decoded.append(payload)
            return Msg.FromString(payload)

    seen = action(payload=Msg(text="hi").SerializeToString(), message_type=Counting)
    assert decoded == []
    assert seen.request.text == "hi" and seen.request.text == "hi"
    assert len(decoded) == 1
    assert action(payload=b"x").request is None  # no type known here (a client)
    with pytest.raises(rpc.RpcError) as bad:
        action(payload=b"\xff\xff", message_type=Msg).request
    assert bad.value.code == rpc.StatusCode.INVALID_ARGUMENT
