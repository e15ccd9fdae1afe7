from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ProtocolVersion(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PROTOCOL_VERSION_UNSPECIFIED: _ClassVar[ProtocolVersion]
    PROTOCOL_VERSION_1: _ClassVar[ProtocolVersion]

class SlowConsumerPolicy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SLOW_CONSUMER_POLICY_UNSPECIFIED: _ClassVar[SlowConsumerPolicy]
    DROP_OLDEST: _ClassVar[SlowConsumerPolicy]
    DROP_NEWEST: _ClassVar[SlowConsumerPolicy]
    DISCONNECT: _ClassVar[SlowConsumerPolicy]
    BLOCK_PUBLISHER: _ClassVar[SlowConsumerPolicy]
PROTOCOL_VERSION_UNSPECIFIED: ProtocolVersion
PROTOCOL_VERSION_1: ProtocolVersion
SLOW_CONSUMER_POLICY_UNSPECIFIED: SlowConsumerPolicy
DROP_OLDEST: SlowConsumerPolicy
DROP_NEWEST: SlowConsumerPolicy
DISCONNECT: SlowConsumerPolicy
BLOCK_PUBLISHER: SlowConsumerPolicy

class Envelope(_message.Message):
    __slots__ = ("payload", "seq", "ack", "ack_now", "request", "response", "stream_item", "stream_end", "cancel", "credit", "heartbeat", "notify", "publish", "deliver", "broadcast", "subscribe", "unsubscribe", "produce", "consume", "task", "task_done", "hello", "welcome", "challenge", "proof", "close")
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    ACK_FIELD_NUMBER: _ClassVar[int]
    ACK_NOW_FIELD_NUMBER: _ClassVar[int]
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    STREAM_ITEM_FIELD_NUMBER: _ClassVar[int]
    STREAM_END_FIELD_NUMBER: _ClassVar[int]
    CANCEL_FIELD_NUMBER: _ClassVar[int]
    CREDIT_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    NOTIFY_FIELD_NUMBER: _ClassVar[int]
    PUBLISH_FIELD_NUMBER: _ClassVar[int]
    DELIVER_FIELD_NUMBER: _ClassVar[int]
    BROADCAST_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIBE_FIELD_NUMBER: _ClassVar[int]
    UNSUBSCRIBE_FIELD_NUMBER: _ClassVar[int]
    PRODUCE_FIELD_NUMBER: _ClassVar[int]
    CONSUME_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    TASK_DONE_FIELD_NUMBER: _ClassVar[int]
    HELLO_FIELD_NUMBER: _ClassVar[int]
    WELCOME_FIELD_NUMBER: _ClassVar[int]
    CHALLENGE_FIELD_NUMBER: _ClassVar[int]
    PROOF_FIELD_NUMBER: _ClassVar[int]
    CLOSE_FIELD_NUMBER: _ClassVar[int]
    payload: bytes
    seq: int
    ack: int
    ack_now: bool
    request: Request
    response: Response
    stream_item: StreamItem
    stream_end: StreamEnd
    cancel: Cancel
    credit: Credit
    heartbeat: Heartbeat
    notify: Notify
    publish: Publish
    deliver: Deliver
    broadcast: Broadcast
    subscribe: Subscribe
    unsubscribe: Unsubscribe
    produce: Produce
    consume: Consume
    task: Task
    task_done: TaskDone
    hello: Hello
    welcome: Welcome
    challenge: Challenge
    proof: Proof
    close: Close
    def __init__(self, payload: _Optional[bytes] = ..., seq: _Optional[int] = ..., ack: _Optional[int] = ..., ack_now: _Optional[bool] = ..., request: _Optional[_Union[Request, _Mapping]] = ..., response: _Optional[_Union[Response, _Mapping]] = ..., stream_item: _Optional[_Union[StreamItem, _Mapping]] = ..., stream_end: _Optional[_Union[StreamEnd, _Mapping]] = ..., cancel: _Optional[_Union[Cancel, _Mapping]] = ..., credit: _Optional[_Union[Credit, _Mapping]] = ..., heartbeat: _Optional[_Union[Heartbeat, _Mapping]] = ..., notify: _Optional[_Union[Notify, _Mapping]] = ..., publish: _Optional[_Union[Publish, _Mapping]] = ..., deliver: _Optional[_Union[Deliver, _Mapping]] = ..., broadcast: _Optional[_Union[Broadcast, _Mapping]] = ..., subscribe: _Optional[_Union[Subscribe, _Mapping]] = ..., unsubscribe: _Optional[_Union[Unsubscribe, _Mapping]] = ..., produce: _Optional[_Union[Produce, _Mapping]] = ..., consume: _Optional[_Union[Consume, _Mapping]] = ..., task: _Optional[_Union[Task, _Mapping]] = ..., task_done: _Optional[_Union[TaskDone, _Mapping]] = ..., hello: _Optional[_Union[Hello, _Mapping]] = ..., welcome: _Optional[_Union[Welcome, _Mapping]] = ..., challenge: _Optional[_Union[Challenge, _Mapping]] = ..., proof: _Optional[_Union[Proof, _Mapping]] = ..., close: _Optional[_Union[Close, _Mapping]] = ...) -> None: ...

class Status(_message.Message):
    __slots__ = ("code", "message", "details", "bad_request")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    BAD_REQUEST_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    details: str
    bad_request: bytes
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ..., details: _Optional[str] = ..., bad_request: _Optional[bytes] = ...) -> None: ...

class BadRequest(_message.Message):
    __slots__ = ("field_violations",)
    class FieldViolation(_message.Message):
        __slots__ = ("field", "description", "reason")
        FIELD_FIELD_NUMBER: _ClassVar[int]
        DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
        REASON_FIELD_NUMBER: _ClassVar[int]
        field: str
        description: str
        reason: str
        def __init__(self, field: _Optional[str] = ..., description: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...
    FIELD_VIOLATIONS_FIELD_NUMBER: _ClassVar[int]
    field_violations: _containers.RepeatedCompositeFieldContainer[BadRequest.FieldViolation]
    def __init__(self, field_violations: _Optional[_Iterable[_Union[BadRequest.FieldViolation, _Mapping]]] = ...) -> None: ...

class HeartbeatSettings(_message.Message):
    __slots__ = ("interval_ms", "misses")
    INTERVAL_MS_FIELD_NUMBER: _ClassVar[int]
    MISSES_FIELD_NUMBER: _ClassVar[int]
    interval_ms: int
    misses: int
    def __init__(self, interval_ms: _Optional[int] = ..., misses: _Optional[int] = ...) -> None: ...

class PeerIdentity(_message.Message):
    __slots__ = ("peer_id", "name", "pid")
    PEER_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    peer_id: str
    name: str
    pid: int
    def __init__(self, peer_id: _Optional[str] = ..., name: _Optional[str] = ..., pid: _Optional[int] = ...) -> None: ...

class Hello(_message.Message):
    __slots__ = ("version", "identity", "heartbeat", "max_frame_size", "resume_session_id", "resume_received_seq", "auth_nonce", "metadata", "max_concurrent_calls", "resume_token")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    VERSION_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    MAX_FRAME_SIZE_FIELD_NUMBER: _ClassVar[int]
    RESUME_SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    RESUME_RECEIVED_SEQ_FIELD_NUMBER: _ClassVar[int]
    AUTH_NONCE_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    MAX_CONCURRENT_CALLS_FIELD_NUMBER: _ClassVar[int]
    RESUME_TOKEN_FIELD_NUMBER: _ClassVar[int]
    version: ProtocolVersion
    identity: PeerIdentity
    heartbeat: HeartbeatSettings
    max_frame_size: int
    resume_session_id: str
    resume_received_seq: int
    auth_nonce: bytes
    metadata: _containers.ScalarMap[str, str]
    max_concurrent_calls: int
    resume_token: bytes
    def __init__(self, version: _Optional[_Union[ProtocolVersion, str]] = ..., identity: _Optional[_Union[PeerIdentity, _Mapping]] = ..., heartbeat: _Optional[_Union[HeartbeatSettings, _Mapping]] = ..., max_frame_size: _Optional[int] = ..., resume_session_id: _Optional[str] = ..., resume_received_seq: _Optional[int] = ..., auth_nonce: _Optional[bytes] = ..., metadata: _Optional[_Mapping[str, str]] = ..., max_concurrent_calls: _Optional[int] = ..., resume_token: _Optional[bytes] = ...) -> None: ...

class Welcome(_message.Message):
    __slots__ = ("version", "identity", "heartbeat", "max_frame_size", "session_id", "resumed", "resume_received_seq", "max_concurrent_calls", "resume_token", "publish_window", "session_grace_ms")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    MAX_FRAME_SIZE_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    RESUMED_FIELD_NUMBER: _ClassVar[int]
    RESUME_RECEIVED_SEQ_FIELD_NUMBER: _ClassVar[int]
    MAX_CONCURRENT_CALLS_FIELD_NUMBER: _ClassVar[int]
    RESUME_TOKEN_FIELD_NUMBER: _ClassVar[int]
    PUBLISH_WINDOW_FIELD_NUMBER: _ClassVar[int]
    SESSION_GRACE_MS_FIELD_NUMBER: _ClassVar[int]
    version: ProtocolVersion
    identity: PeerIdentity
    heartbeat: HeartbeatSettings
    max_frame_size: int
    session_id: str
    resumed: bool
    resume_received_seq: int
    max_concurrent_calls: int
    resume_token: bytes
    publish_window: int
    session_grace_ms: int
    def __init__(self, version: _Optional[_Union[ProtocolVersion, str]] = ..., identity: _Optional[_Union[PeerIdentity, _Mapping]] = ..., heartbeat: _Optional[_Union[HeartbeatSettings, _Mapping]] = ..., max_frame_size: _Optional[int] = ..., session_id: _Optional[str] = ..., resumed: _Optional[bool] = ..., resume_received_seq: _Optional[int] = ..., max_concurrent_calls: _Optional[int] = ..., resume_token: _Optional[bytes] = ..., publish_window: _Optional[int] = ..., session_grace_ms: _Optional[int] = ...) -> None: ...

class Challenge(_message.Message):
    __slots__ = ("nonce", "server_proof")
    NONCE_FIELD_NUMBER: _ClassVar[int]
    SERVER_PROOF_FIELD_NUMBER: _ClassVar[int]
    nonce: bytes
    server_proof: bytes
    def __init__(self, nonce: _Optional[bytes] = ..., server_proof: _Optional[bytes] = ...) -> None: ...

class Proof(_message.Message):
    __slots__ = ("mac",)
    MAC_FIELD_NUMBER: _ClassVar[int]
    mac: bytes
    def __init__(self, mac: _Optional[bytes] = ...) -> None: ...

class Heartbeat(_message.Message):
    __slots__ = ("sent_us", "echo_us")
    SENT_US_FIELD_NUMBER: _ClassVar[int]
    ECHO_US_FIELD_NUMBER: _ClassVar[int]
    sent_us: int
    echo_us: int
    def __init__(self, sent_us: _Optional[int] = ..., echo_us: _Optional[int] = ...) -> None: ...

class Request(_message.Message):
    __slots__ = ("call_id", "method", "timeout_us", "metadata", "initial_credit")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_US_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    INITIAL_CREDIT_FIELD_NUMBER: _ClassVar[int]
    call_id: int
    method: str
    timeout_us: int
    metadata: _containers.ScalarMap[str, str]
    initial_credit: int
    def __init__(self, call_id: _Optional[int] = ..., method: _Optional[str] = ..., timeout_us: _Optional[int] = ..., metadata: _Optional[_Mapping[str, str]] = ..., initial_credit: _Optional[int] = ...) -> None: ...

class Response(_message.Message):
    __slots__ = ("call_id", "status")
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    call_id: int
    status: Status
    def __init__(self, call_id: _Optional[int] = ..., status: _Optional[_Union[Status, _Mapping]] = ...) -> None: ...

class StreamItem(_message.Message):
    __slots__ = ("call_id",)
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    call_id: int
    def __init__(self, call_id: _Optional[int] = ...) -> None: ...

class StreamEnd(_message.Message):
    __slots__ = ("call_id", "status")
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    call_id: int
    status: Status
    def __init__(self, call_id: _Optional[int] = ..., status: _Optional[_Union[Status, _Mapping]] = ...) -> None: ...

class Cancel(_message.Message):
    __slots__ = ("call_id", "reason", "code")
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    call_id: int
    reason: str
    code: int
    def __init__(self, call_id: _Optional[int] = ..., reason: _Optional[str] = ..., code: _Optional[int] = ...) -> None: ...

class Credit(_message.Message):
    __slots__ = ("call_id", "subscription_id", "consumer_id", "items", "publish")
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIPTION_ID_FIELD_NUMBER: _ClassVar[int]
    CONSUMER_ID_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    PUBLISH_FIELD_NUMBER: _ClassVar[int]
    call_id: int
    subscription_id: int
    consumer_id: int
    items: int
    publish: bool
    def __init__(self, call_id: _Optional[int] = ..., subscription_id: _Optional[int] = ..., consumer_id: _Optional[int] = ..., items: _Optional[int] = ..., publish: _Optional[bool] = ...) -> None: ...

class Notify(_message.Message):
    __slots__ = ("method", "metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    METHOD_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    method: str
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, method: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class Publish(_message.Message):
    __slots__ = ("method", "topic", "call_id")
    METHOD_FIELD_NUMBER: _ClassVar[int]
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    method: str
    topic: str
    call_id: int
    def __init__(self, method: _Optional[str] = ..., topic: _Optional[str] = ..., call_id: _Optional[int] = ...) -> None: ...

class Deliver(_message.Message):
    __slots__ = ("subscription_id", "topic", "publisher", "publisher_seq", "dropped")
    SUBSCRIPTION_ID_FIELD_NUMBER: _ClassVar[int]
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    PUBLISHER_FIELD_NUMBER: _ClassVar[int]
    PUBLISHER_SEQ_FIELD_NUMBER: _ClassVar[int]
    DROPPED_FIELD_NUMBER: _ClassVar[int]
    subscription_id: int
    topic: str
    publisher: str
    publisher_seq: int
    dropped: int
    def __init__(self, subscription_id: _Optional[int] = ..., topic: _Optional[str] = ..., publisher: _Optional[str] = ..., publisher_seq: _Optional[int] = ..., dropped: _Optional[int] = ...) -> None: ...

class Broadcast(_message.Message):
    __slots__ = ("method", "origin", "call_id")
    METHOD_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    method: str
    origin: str
    call_id: int
    def __init__(self, method: _Optional[str] = ..., origin: _Optional[str] = ..., call_id: _Optional[int] = ...) -> None: ...

class Subscribe(_message.Message):
    __slots__ = ("subscription_id", "call_id", "method", "pattern", "queue_limit", "policy")
    SUBSCRIPTION_ID_FIELD_NUMBER: _ClassVar[int]
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    PATTERN_FIELD_NUMBER: _ClassVar[int]
    QUEUE_LIMIT_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    subscription_id: int
    call_id: int
    method: str
    pattern: str
    queue_limit: int
    policy: SlowConsumerPolicy
    def __init__(self, subscription_id: _Optional[int] = ..., call_id: _Optional[int] = ..., method: _Optional[str] = ..., pattern: _Optional[str] = ..., queue_limit: _Optional[int] = ..., policy: _Optional[_Union[SlowConsumerPolicy, str]] = ...) -> None: ...

class Unsubscribe(_message.Message):
    __slots__ = ("subscription_id",)
    SUBSCRIPTION_ID_FIELD_NUMBER: _ClassVar[int]
    subscription_id: int
    def __init__(self, subscription_id: _Optional[int] = ...) -> None: ...

class Produce(_message.Message):
    __slots__ = ("call_id", "method")
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    call_id: int
    method: str
    def __init__(self, call_id: _Optional[int] = ..., method: _Optional[str] = ...) -> None: ...

class Consume(_message.Message):
    __slots__ = ("consumer_id", "call_id", "method", "prefetch", "stop")
    CONSUMER_ID_FIELD_NUMBER: _ClassVar[int]
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    PREFETCH_FIELD_NUMBER: _ClassVar[int]
    STOP_FIELD_NUMBER: _ClassVar[int]
    consumer_id: int
    call_id: int
    method: str
    prefetch: int
    stop: bool
    def __init__(self, consumer_id: _Optional[int] = ..., call_id: _Optional[int] = ..., method: _Optional[str] = ..., prefetch: _Optional[int] = ..., stop: _Optional[bool] = ...) -> None: ...

class Task(_message.Message):
    __slots__ = ("consumer_id", "task_id", "attempt")
    CONSUMER_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    consumer_id: int
    task_id: int
    attempt: int
    def __init__(self, consumer_id: _Optional[int] = ..., task_id: _Optional[int] = ..., attempt: _Optional[int] = ...) -> None: ...

class TaskDone(_message.Message):
    __slots__ = ("consumer_id", "task_id", "status")
    CONSUMER_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    consumer_id: int
    task_id: int
    status: Status
    def __init__(self, consumer_id: _Optional[int] = ..., task_id: _Optional[int] = ..., status: _Optional[_Union[Status, _Mapping]] = ...) -> None: ...

class Close(_message.Message):
    __slots__ = ("status", "end_session")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    END_SESSION_FIELD_NUMBER: _ClassVar[int]
    status: Status
    end_session: bool
    def __init__(self, status: _Optional[_Union[Status, _Mapping]] = ..., end_session: _Optional[bool] = ...) -> None: ...
