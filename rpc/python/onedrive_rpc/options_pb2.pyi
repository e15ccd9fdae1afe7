from google.protobuf import descriptor_pb2 as _descriptor_pb2
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from typing import ClassVar as _ClassVar

DESCRIPTOR: _descriptor.FileDescriptor

class Pattern(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PATTERN_DEFAULT: _ClassVar[Pattern]
    REQUEST_RESPONSE: _ClassVar[Pattern]
    SERVER_STREAM: _ClassVar[Pattern]
    NOTIFICATION: _ClassVar[Pattern]
    PUBLISH_SUBSCRIBE: _ClassVar[Pattern]
    PRODUCER_CONSUMER: _ClassVar[Pattern]
    BROADCAST: _ClassVar[Pattern]
PATTERN_DEFAULT: Pattern
REQUEST_RESPONSE: Pattern
SERVER_STREAM: Pattern
NOTIFICATION: Pattern
PUBLISH_SUBSCRIBE: Pattern
PRODUCER_CONSUMER: Pattern
BROADCAST: Pattern
PATTERN_FIELD_NUMBER: _ClassVar[int]
pattern: _descriptor.FieldDescriptor
