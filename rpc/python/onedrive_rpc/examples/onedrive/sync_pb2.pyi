from buf.validate import validate_pb2 as _validate_pb2
from google.protobuf import empty_pb2 as _empty_pb2
from onedrive_rpc import options_pb2 as _options_pb2
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ChangeKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CHANGE_KIND_UNSPECIFIED: _ClassVar[ChangeKind]
    CREATED: _ClassVar[ChangeKind]
    MODIFIED: _ClassVar[ChangeKind]
    DELETED: _ClassVar[ChangeKind]
    MOVED: _ClassVar[ChangeKind]

class LogLevel(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LOG_LEVEL_UNSPECIFIED: _ClassVar[LogLevel]
    DEBUG: _ClassVar[LogLevel]
    INFO: _ClassVar[LogLevel]
    WARNING: _ClassVar[LogLevel]
    ERROR: _ClassVar[LogLevel]
CHANGE_KIND_UNSPECIFIED: ChangeKind
CREATED: ChangeKind
MODIFIED: ChangeKind
DELETED: ChangeKind
MOVED: ChangeKind
LOG_LEVEL_UNSPECIFIED: LogLevel
DEBUG: LogLevel
INFO: LogLevel
WARNING: LogLevel
ERROR: LogLevel

class ItemRef(_message.Message):
    __slots__ = ("drive_id", "path")
    DRIVE_ID_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    drive_id: str
    path: str
    def __init__(self, drive_id: _Optional[str] = ..., path: _Optional[str] = ...) -> None: ...

class Item(_message.Message):
    __slots__ = ("drive_id", "path", "id", "folder", "size", "etag", "modified_unix")
    DRIVE_ID_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    FOLDER_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    MODIFIED_UNIX_FIELD_NUMBER: _ClassVar[int]
    drive_id: str
    path: str
    id: str
    folder: bool
    size: int
    etag: str
    modified_unix: int
    def __init__(self, drive_id: _Optional[str] = ..., path: _Optional[str] = ..., id: _Optional[str] = ..., folder: _Optional[bool] = ..., size: _Optional[int] = ..., etag: _Optional[str] = ..., modified_unix: _Optional[int] = ...) -> None: ...

class ItemChange(_message.Message):
    __slots__ = ("kind", "item", "old_path")
    KIND_FIELD_NUMBER: _ClassVar[int]
    ITEM_FIELD_NUMBER: _ClassVar[int]
    OLD_PATH_FIELD_NUMBER: _ClassVar[int]
    kind: ChangeKind
    item: Item
    old_path: str
    def __init__(self, kind: _Optional[_Union[ChangeKind, str]] = ..., item: _Optional[_Union[Item, _Mapping]] = ..., old_path: _Optional[str] = ...) -> None: ...

class Upload(_message.Message):
    __slots__ = ("drive_id", "local_path", "remote_path", "size")
    DRIVE_ID_FIELD_NUMBER: _ClassVar[int]
    LOCAL_PATH_FIELD_NUMBER: _ClassVar[int]
    REMOTE_PATH_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    drive_id: str
    local_path: str
    remote_path: str
    size: int
    def __init__(self, drive_id: _Optional[str] = ..., local_path: _Optional[str] = ..., remote_path: _Optional[str] = ..., size: _Optional[int] = ...) -> None: ...

class ShutdownNotice(_message.Message):
    __slots__ = ("reason", "grace_seconds")
    REASON_FIELD_NUMBER: _ClassVar[int]
    GRACE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    reason: str
    grace_seconds: int
    def __init__(self, reason: _Optional[str] = ..., grace_seconds: _Optional[int] = ...) -> None: ...

class LogLine(_message.Message):
    __slots__ = ("level", "component", "message")
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    COMPONENT_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    level: LogLevel
    component: str
    message: str
    def __init__(self, level: _Optional[_Union[LogLevel, str]] = ..., component: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...
