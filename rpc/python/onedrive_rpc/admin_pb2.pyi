from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AdminListRequest(_message.Message):
    __slots__ = ("limit",)
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    limit: int
    def __init__(self, limit: _Optional[int] = ...) -> None: ...

class PeerStatus(_message.Message):
    __slots__ = ("session_id", "name", "pid", "peer_id", "identity", "uid", "transport", "address", "state", "started_at", "connected_at", "calls_in_flight", "calls_received", "calls_out", "bytes_in", "bytes_out", "bytes_queued", "bytes_unacked", "heartbeat_interval", "last_heard", "grace_left", "resumes")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    PEER_ID_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_FIELD_NUMBER: _ClassVar[int]
    UID_FIELD_NUMBER: _ClassVar[int]
    TRANSPORT_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    CONNECTED_AT_FIELD_NUMBER: _ClassVar[int]
    CALLS_IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    CALLS_RECEIVED_FIELD_NUMBER: _ClassVar[int]
    CALLS_OUT_FIELD_NUMBER: _ClassVar[int]
    BYTES_IN_FIELD_NUMBER: _ClassVar[int]
    BYTES_OUT_FIELD_NUMBER: _ClassVar[int]
    BYTES_QUEUED_FIELD_NUMBER: _ClassVar[int]
    BYTES_UNACKED_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    LAST_HEARD_FIELD_NUMBER: _ClassVar[int]
    GRACE_LEFT_FIELD_NUMBER: _ClassVar[int]
    RESUMES_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    name: str
    pid: int
    peer_id: str
    identity: str
    uid: int
    transport: str
    address: str
    state: str
    started_at: float
    connected_at: float
    calls_in_flight: int
    calls_received: int
    calls_out: int
    bytes_in: int
    bytes_out: int
    bytes_queued: int
    bytes_unacked: int
    heartbeat_interval: float
    last_heard: float
    grace_left: float
    resumes: int
    def __init__(self, session_id: _Optional[str] = ..., name: _Optional[str] = ..., pid: _Optional[int] = ..., peer_id: _Optional[str] = ..., identity: _Optional[str] = ..., uid: _Optional[int] = ..., transport: _Optional[str] = ..., address: _Optional[str] = ..., state: _Optional[str] = ..., started_at: _Optional[float] = ..., connected_at: _Optional[float] = ..., calls_in_flight: _Optional[int] = ..., calls_received: _Optional[int] = ..., calls_out: _Optional[int] = ..., bytes_in: _Optional[int] = ..., bytes_out: _Optional[int] = ..., bytes_queued: _Optional[int] = ..., bytes_unacked: _Optional[int] = ..., heartbeat_interval: _Optional[float] = ..., last_heard: _Optional[float] = ..., grace_left: _Optional[float] = ..., resumes: _Optional[int] = ...) -> None: ...

class PeersReply(_message.Message):
    __slots__ = ("peers",)
    PEERS_FIELD_NUMBER: _ClassVar[int]
    peers: _containers.RepeatedCompositeFieldContainer[PeerStatus]
    def __init__(self, peers: _Optional[_Iterable[_Union[PeerStatus, _Mapping]]] = ...) -> None: ...

class SubscriptionStatus(_message.Message):
    __slots__ = ("method", "pattern", "session_id", "peer", "policy", "queue_limit", "queued", "queued_bytes", "dropped")
    METHOD_FIELD_NUMBER: _ClassVar[int]
    PATTERN_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    PEER_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    QUEUE_LIMIT_FIELD_NUMBER: _ClassVar[int]
    QUEUED_FIELD_NUMBER: _ClassVar[int]
    QUEUED_BYTES_FIELD_NUMBER: _ClassVar[int]
    DROPPED_FIELD_NUMBER: _ClassVar[int]
    method: str
    pattern: str
    session_id: str
    peer: str
    policy: str
    queue_limit: int
    queued: int
    queued_bytes: int
    dropped: int
    def __init__(self, method: _Optional[str] = ..., pattern: _Optional[str] = ..., session_id: _Optional[str] = ..., peer: _Optional[str] = ..., policy: _Optional[str] = ..., queue_limit: _Optional[int] = ..., queued: _Optional[int] = ..., queued_bytes: _Optional[int] = ..., dropped: _Optional[int] = ...) -> None: ...

class SubscriptionsReply(_message.Message):
    __slots__ = ("subscriptions", "total")
    SUBSCRIPTIONS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    subscriptions: _containers.RepeatedCompositeFieldContainer[SubscriptionStatus]
    total: int
    def __init__(self, subscriptions: _Optional[_Iterable[_Union[SubscriptionStatus, _Mapping]]] = ..., total: _Optional[int] = ...) -> None: ...

class QueueStatus(_message.Message):
    __slots__ = ("method", "ready", "in_flight", "consumers", "dead_letters", "produced", "completed", "failed_attempts", "redelivered")
    METHOD_FIELD_NUMBER: _ClassVar[int]
    READY_FIELD_NUMBER: _ClassVar[int]
    IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    CONSUMERS_FIELD_NUMBER: _ClassVar[int]
    DEAD_LETTERS_FIELD_NUMBER: _ClassVar[int]
    PRODUCED_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_FIELD_NUMBER: _ClassVar[int]
    FAILED_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    REDELIVERED_FIELD_NUMBER: _ClassVar[int]
    method: str
    ready: int
    in_flight: int
    consumers: int
    dead_letters: int
    produced: int
    completed: int
    failed_attempts: int
    redelivered: int
    def __init__(self, method: _Optional[str] = ..., ready: _Optional[int] = ..., in_flight: _Optional[int] = ..., consumers: _Optional[int] = ..., dead_letters: _Optional[int] = ..., produced: _Optional[int] = ..., completed: _Optional[int] = ..., failed_attempts: _Optional[int] = ..., redelivered: _Optional[int] = ...) -> None: ...

class QueuesReply(_message.Message):
    __slots__ = ("queues",)
    QUEUES_FIELD_NUMBER: _ClassVar[int]
    queues: _containers.RepeatedCompositeFieldContainer[QueueStatus]
    def __init__(self, queues: _Optional[_Iterable[_Union[QueueStatus, _Mapping]]] = ...) -> None: ...

class DeadLettersRequest(_message.Message):
    __slots__ = ("queue", "limit", "payloads")
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    PAYLOADS_FIELD_NUMBER: _ClassVar[int]
    queue: str
    limit: int
    payloads: bool
    def __init__(self, queue: _Optional[str] = ..., limit: _Optional[int] = ..., payloads: _Optional[bool] = ...) -> None: ...

class DeadLetterStatus(_message.Message):
    __slots__ = ("queue", "task_id", "attempts", "last_error", "died_at", "payload_size", "payload")
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    DIED_AT_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    queue: str
    task_id: int
    attempts: int
    last_error: str
    died_at: float
    payload_size: int
    payload: bytes
    def __init__(self, queue: _Optional[str] = ..., task_id: _Optional[int] = ..., attempts: _Optional[int] = ..., last_error: _Optional[str] = ..., died_at: _Optional[float] = ..., payload_size: _Optional[int] = ..., payload: _Optional[bytes] = ...) -> None: ...

class DeadLettersReply(_message.Message):
    __slots__ = ("dead_letters", "total")
    DEAD_LETTERS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    dead_letters: _containers.RepeatedCompositeFieldContainer[DeadLetterStatus]
    total: int
    def __init__(self, dead_letters: _Optional[_Iterable[_Union[DeadLetterStatus, _Mapping]]] = ..., total: _Optional[int] = ...) -> None: ...

class ReplayRequest(_message.Message):
    __slots__ = ("queue", "task_ids")
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    TASK_IDS_FIELD_NUMBER: _ClassVar[int]
    queue: str
    task_ids: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, queue: _Optional[str] = ..., task_ids: _Optional[_Iterable[int]] = ...) -> None: ...

class ReplayReply(_message.Message):
    __slots__ = ("replayed",)
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    replayed: int
    def __init__(self, replayed: _Optional[int] = ...) -> None: ...

class DisconnectRequest(_message.Message):
    __slots__ = ("peer", "reason")
    PEER_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    peer: str
    reason: str
    def __init__(self, peer: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class DisconnectReply(_message.Message):
    __slots__ = ("session_ids",)
    SESSION_IDS_FIELD_NUMBER: _ClassVar[int]
    session_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, session_ids: _Optional[_Iterable[str]] = ...) -> None: ...
