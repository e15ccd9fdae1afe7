"""The conformance runner's own rules: partial matching, substitution,
paths, scenario shape, and how a mismatch is reported (against a scripted
fake server, so each rule is shown without the real one)."""
from __future__ import annotations

import json
from typing import List

import pytest
from gevent.server import StreamServer

from onedrive_rpc import conformance
from onedrive_rpc.conformance.match import ScenarioError, check_paths, mismatch, substitute, to_envelope
from onedrive_rpc.core import wire_pb2
from onedrive_rpc.testing import echo_pb2
from onedrive_rpc.testing.helpers import framed


def response(call_id=1, code=0, message="", payload=b"") -> wire_pb2.Envelope:
    env = wire_pb2.Envelope(seq=1, ack=1)
    env.response.call_id = call_id
    if code or message:
        env.response.status.code = code
        env.response.status.message = message
    if payload:
        env.payload = payload
    return env


def heartbeat(ack=0) -> wire_pb2.Envelope:
    env = wire_pb2.Envelope(ack=ack)
    env.heartbeat.sent_us = 1
    return env


MSG = "onedrive_rpc.testing.Msg"


def test_fields_not_named_are_not_checked():
    got = response(payload=echo_pb2.Msg(text="hi", data=b"x").SerializeToString())
    assert mismatch({"response": {"call_id": 1}}, got) is None
    assert mismatch({"payload_msg": {"type": MSG, "value": {"text": "hi"}}}, got) is None


def test_a_mismatch_names_the_field_and_both_values():
    assert mismatch({"response": {"status": {"code": 12}}}, response(code=4)) == \
        "response.status.code is 4, expected 12"
    got = response(payload=echo_pb2.Msg(text="hi").SerializeToString())
    assert mismatch({"payload_msg": {"type": MSG, "value": {"text": "ho"}}}, got) == \
        'payload_msg.text is "hi", expected "ho"'


def test_the_frame_kind_named_must_be_the_frames_kind():
    assert mismatch({"stream_end": {}}, response()) == \
        "stream_end: expected a stream_end, the frame has response"


def test_an_absent_message_compares_as_its_defaults():
    """status absent is OK (§5.2): {"code": 0} matches it."""
    assert mismatch({"response": {"call_id": 1, "status": {"code": 0}}}, response()) is None


def test_values_in_protobufs_json_forms():
    """uint64 as a number or a string, enums by name or number, bytes as base64,
    camelCase names as well as proto names: json_format's rules."""
    got = wire_pb2.Envelope(seq=3, payload=b"\xff\xff")
    got.hello.version = wire_pb2.PROTOCOL_VERSION_1
    assert mismatch({"seq": "3", "hello": {"version": 1}, "payload": "//8="}, got) is None
    assert mismatch({"seq": 3, "hello": {"version": "PROTOCOL_VERSION_1"}}, got) is None
    assert mismatch({"ackNow": False}, got) is None


def test_maps_match_on_the_keys_named():
    got = wire_pb2.Envelope()
    got.request.metadata.update({"a": "1", "b": "2"})
    assert mismatch({"request": {"metadata": {"a": "1"}}}, got) is None
    assert "expected to contain {'a': '2'}" in mismatch({"request": {"metadata": {"a": "2"}}}, got)


def test_a_payload_that_does_not_parse_is_a_mismatch():
    got = response(payload=b"\xff\xff")
    assert "payload does not parse as onedrive_rpc.testing.Msg" in mismatch(
        {"payload_msg": {"type": MSG, "value": {}}}, got)


def test_unknown_fields_and_types_are_the_scenarios_fault():
    with pytest.raises(ScenarioError, match="bogus"):
        mismatch({"bogus": 1}, response())
    with pytest.raises(ScenarioError, match="unknown message type"):
        mismatch({"payload_msg": {"type": "no.Such", "value": {}}}, response())


def test_substitution_keeps_the_type_of_a_whole_reference_and_formats_embedded_ones():
    variables = {"sid": "abc", "n": 7}
    assert substitute({"x": ["${n}", "s-${sid}-${n}"], "y": 1}, variables) == {"x": [7, "s-abc-7"], "y": 1}
    with pytest.raises(ScenarioError, match="unknown variable"):
        substitute("${nope}", variables)


def test_send_builds_the_payload_from_payload_msg():
    env = to_envelope({"seq": 1, "request": {"call_id": 2, "method": "/m"},
                       "payload_msg": {"type": MSG, "value": {"text": "hi"}}})
    assert env.seq == 1 and env.request.call_id == 2
    assert echo_pb2.Msg.FromString(env.payload).text == "hi"


def test_fill_makes_a_large_bytes_field_without_writing_it_out():
    env = to_envelope({"payload_msg": {"type": MSG, "value": {"text": "t"}, "fill": {"data": 70000}}})
    msg = echo_pb2.Msg.FromString(env.payload)
    assert msg.text == "t" and msg.data == b"x" * 70000
    for fill in ({"text": 3}, {"data": -1}, {"nope": 1}):
        with pytest.raises(ScenarioError):
            to_envelope({"payload_msg": {"type": MSG, "value": {}, "fill": fill}})


def test_contains_present_and_absent():
    got = response(code=12, message="service X has no method 'Nope'")
    assert check_paths({"contains": {"response.status.message": "no method"},
                        "present": ["response.status"], "absent": ["payload", "response.status.details"]},
                       got) is None
    assert check_paths({"absent": ["response.status"]}, got) == 'response.status is {"code": 12, ' \
        '"message": "service X has no method \'Nope\'", "details": "", "bad_request": ""}, expected it absent'
    assert "expected it to contain" in check_paths({"contains": {"response.status.message": "zzz"}}, got)


# ---- scenario files


def write(tmp_path, name, steps, **extra) -> str:
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(dict({"name": name, "server": "echo", "steps": steps}, **extra)))
    return str(path)


@pytest.mark.parametrize("steps, error", [
    ([{"bogus": 1}], "exactly one of"),
    ([{"connect": "a", "send_raw": "00"}], "exactly one of"),
    ([{"connect": "a", "within_ms": 5}], "does not take 'within_ms'"),
    ([{"expect_eof": 1}], "takes a bool"),
    ([{"expect": {}, "within_ms": 0}], "positive integer"),
    ([{"expect_close": {"status": 1}}], "expect_close takes"),
    ([{"expect_challenge": {"secret": "AA=="}}], "expect_challenge takes client_nonce, secret"),
    ([{"send_proof": {"secret": "AA==", "client_nonce": "AA=="}, "capture": {}}],
     "does not take 'capture'"),
    ([], "non-empty"),
])
def test_the_shape_of_a_scenario_is_checked_when_loaded(tmp_path, steps, error):
    with pytest.raises(ScenarioError, match=error):
        conformance.load(write(tmp_path, "s", steps))


def test_a_scenarios_name_is_its_file_name(tmp_path):
    path = write(tmp_path, "s", [{"connect": "a"}])
    (tmp_path / "t.json").write_text(open(path).read())
    with pytest.raises(ScenarioError, match="differs from the file name"):
        conformance.load(str(tmp_path / "t.json"))


def test_select_refuses_unknown_names():
    scenarios = conformance.load_all()
    assert [s.name for s in conformance.select(scenarios, ["call_unary_ok"])] == ["call_unary_ok"]
    with pytest.raises(ScenarioError, match="no scenario named nope"):
        conformance.select(scenarios, ["nope"])


# ---- the runner against a scripted server


@pytest.fixture
def scripted():
    """scripted(frames, close=True) -> the URL of a server that, on each
    connection, sends `frames` (Envelopes or raw bytes) at once and then
    hangs up (or keeps the connection open until the client leaves)."""
    servers: List[StreamServer] = []

    def serve(frames, close=True) -> str:
        def handle(sock, address):
            sock.sendall(b"".join(f if isinstance(f, bytes) else framed(f) for f in frames))
            if not close:
                sock.settimeout(10)
                while sock.recv(65536):
                    pass
            sock.close()

        server = StreamServer(("127.0.0.1", 0), handle)
        server.start()
        servers.append(server)
        return f"tcp://127.0.0.1:{server.server_port}"

    yield serve
    for server in servers:
        server.stop()


def run(tmp_path, url, steps, **extra) -> conformance.Result:
    return conformance.run_scenario(conformance.load(write(tmp_path, "s", steps, **extra)), url)


def test_heartbeats_are_skipped_unless_expected(tmp_path, scripted):
    url = scripted([heartbeat(), heartbeat(ack=1), response()], close=False)
    result = run(tmp_path, url, [{"connect": "a"}, {"expect": {"response": {"call_id": 1}}},
                                 {"expect_nothing_ms": 50}])
    assert result.outcome == "pass", result.message
    result = run(tmp_path, url, [{"connect": "a"}, {"expect": {"heartbeat": {}, "ack": 1}},
                                 {"expect": {"response": {"call_id": 1}}}])
    assert result.outcome == "pass", result.message


def test_a_mismatch_names_the_step_what_was_expected_and_what_arrived(tmp_path, scripted):
    url = scripted([response(code=4)], close=False)
    result = run(tmp_path, url, [{"connect": "a"}, {"send_raw": "00"},
                                 {"expect": {"response": {"call_id": 1, "status": {"code": 12}}}}])
    assert result.outcome == "fail"
    assert result.message.startswith(
        'step 3 (expect on a): mismatch: expected {"response":{"call_id":1,"status":{"code":12}}} on a, '
        'received ')
    assert result.message.endswith("response.status.code is 4, expected 12")


def test_waits_are_bounded(tmp_path, scripted):
    url = scripted([], close=False)
    result = run(tmp_path, url, [{"connect": "a"}, {"expect": {"response": {}}, "within_ms": 100}])
    assert result.outcome == "fail" and "within 100 ms" in result.message
    assert result.seconds < 2
    result = run(tmp_path, url, [{"connect": "a"}, {"expect_eof": True, "within_ms": 100}])
    assert result.outcome == "fail" and "still open after 100 ms" in result.message


def test_eof_and_frames_where_silence_was_expected(tmp_path, scripted):
    result = run(tmp_path, scripted([response()]), [{"connect": "a"}, {"expect_eof": True}])
    assert result.outcome == "fail" and "expected EOF on a, received" in result.message
    result = run(tmp_path, scripted([]), [{"connect": "a"}, {"expect_nothing_ms": 1000}])
    assert result.outcome == "fail" and "closed connection a (EOF)" in result.message
    result = run(tmp_path, scripted([b"\x00\x00\x00\x05ab"]), [{"connect": "a"}, {"expect_eof": True}])
    assert result.outcome == "fail" and "in the middle of a frame" in result.message


def test_expect_unordered_takes_frames_in_any_order(tmp_path, scripted):
    url = scripted([response(2), heartbeat(), response(1)])
    ok = run(tmp_path, url, [{"connect": "a"}, {"expect_unordered": [{"response": {"call_id": 1}},
                                                                     {"response": {"call_id": 2}}]},
                             {"expect_eof": True}])
    assert ok.outcome == "pass", ok.message
    bad = run(tmp_path, url, [{"connect": "a"}, {"expect_unordered": [{"response": {"call_id": 1}},
                                                                      {"response": {"call_id": 3}}]}])
    assert bad.outcome == "fail" and "matches none of" in bad.message


def test_captured_values_are_substituted_later(tmp_path, scripted):
    welcome = wire_pb2.Envelope()
    welcome.welcome.session_id = "s-42"
    welcome.welcome.resume_token = b"\x01\x02"
    url = scripted([welcome, response(7)])
    result = run(tmp_path, url, [
        {"connect": "a"},
        {"expect": {"welcome": {}}, "capture": {"sid": "welcome.session_id", "tok": "welcome.resume_token"}},
        {"expect": {"response": {"call_id": 7}}, "capture": {"call": "response.call_id"}},
        {"send": {"hello": {"resume_session_id": "${sid}", "resume_token": "${tok}",
                            "resume_received_seq": "${call}"}}},
        {"expect_eof": True}])
    assert result.outcome == "pass", result.message


def test_an_expected_failure_excuses_a_mismatch_only(tmp_path, scripted):
    url = scripted([response(code=4)])
    steps = [{"connect": "a"}, {"expect": {"response": {"status": {"code": 0}}}}]
    assert run(tmp_path, url, steps, expected_failure="known").outcome == "xfail"
    assert run(tmp_path, url, steps[:1], expected_failure="known").outcome == "xpass"
    broken = [{"connect": "a"}, {"send": {"hello": {"resume_session_id": "${never_captured}"}}}]
    result = run(tmp_path, url, broken, expected_failure="known")
    assert result.outcome == "fail" and "scenario error: unknown variable" in result.message


def test_expect_any_takes_one_frame_matching_an_alternative(tmp_path, scripted):
    end = wire_pb2.Envelope()
    end.stream_end.call_id = 2
    url = scripted([heartbeat(), end, response(3)])
    either = [{"response": {"call_id": 2}}, {"stream_end": {"call_id": 2}}]
    ok = run(tmp_path, url, [{"connect": "a"}, {"expect_any": either},
                             {"expect": {"response": {"call_id": 3}}}])
    assert ok.outcome == "pass", ok.message
    bad = run(tmp_path, url, [{"connect": "a"}, {"expect_any": either[:1]}])
    assert bad.outcome == "fail" and "which matches none of" in bad.message
