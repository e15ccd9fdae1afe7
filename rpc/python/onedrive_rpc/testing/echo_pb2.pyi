from buf.validate import validate_pb2 as _validate_pb2
from onedrive_rpc import options_pb2 as _options_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class Msg(_message.Message):
    __slots__ = ("text", "data", "delay", "count")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    DELAY_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    text: str
    data: bytes
    delay: float
    count: int
    def __init__(self, text: _Optional[str] = ..., data: _Optional[bytes] = ..., delay: _Optional[float] = ..., count: _Optional[int] = ...) -> None: ...

class Checked(_message.Message):
    __slots__ = ("name", "percent")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PERCENT_FIELD_NUMBER: _ClassVar[int]
    name: str
    percent: int
    def __init__(self, name: _Optional[str] = ..., percent: _Optional[int] = ...) -> None: ...
