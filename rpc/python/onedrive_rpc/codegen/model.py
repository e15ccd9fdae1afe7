"""What the renderer needs to know about a .proto file, read from protoc's request."""
from __future__ import annotations

from typing import Dict, List, NamedTuple, Tuple

from google.protobuf import descriptor_pb2

from ..naming import PATTERN_NAMES, declared_pattern, snake_case

__all__ = ["MethodModel", "ServiceModel", "FileModel", "build_file"]

# Field numbers in descriptor.proto, to find comments in SourceCodeInfo paths.
_SERVICE_FIELD = 6  # FileDescriptorProto.service
_METHOD_FIELD = 2  # ServiceDescriptorProto.method


class MethodModel(NamedTuple):
    name: str            # GetItem
    attribute: str       # get_item
    input_type: str      # python expression, e.g. "_sync_pb2.ItemRequest"
    output_type: str
    server_streaming: bool
    pattern: str         # "" (derived), or a Pattern name
    doc: str


class ServiceModel(NamedTuple):
    name: str
    full_name: str
    doc: str
    methods: Tuple[MethodModel, ...]


class FileModel(NamedTuple):
    proto_name: str      # "onedrive/sync.proto"
    pb2_module: str      # "onedrive.sync_pb2"
    imports: Tuple[Tuple[str, str], ...]   # (module, alias) of every _pb2 the types need
    services: Tuple[ServiceModel, ...]


def module_of(proto_name: str) -> str:
    """The Python module protoc's python_out makes for a .proto file."""
    return proto_name[:-len(".proto")].replace("/", ".").replace("-", "_") + "_pb2"


def _comments(file: descriptor_pb2.FileDescriptorProto) -> Dict[Tuple[int, ...], str]:
    found = {}
    for location in file.source_code_info.location:
        text = location.leading_comments or location.trailing_comments
        if text:
            found[tuple(location.path)] = "\n".join(line.strip() for line in text.strip().splitlines())
    return found


def _pattern(method: descriptor_pb2.MethodDescriptorProto) -> str:
    number = declared_pattern(method.options)
    return PATTERN_NAMES.get(number, "") if number else ""  # unknown numbers: derived too


def build_file(file: descriptor_pb2.FileDescriptorProto,
               files: Dict[str, descriptor_pb2.FileDescriptorProto],
               module_prefix: str = "") -> FileModel:
    """The model of `file`; `files` maps every proto name protoc sent to its
    descriptor. `module_prefix` ("my.pkg") is put before the modules of your
    own protos when the generated code lives inside a Python package
    (protobuf's and onedrive_rpc's own modules keep their names)."""

    def module(proto_name: str) -> str:
        name = module_of(proto_name)
        if module_prefix and not proto_name.startswith(("google/protobuf/", "onedrive_rpc/")):
            return f"{module_prefix}.{name}"
        return name

    owner: Dict[str, str] = {}  # ".pkg.Message" -> proto file that defines it
    for proto in files.values():
        prefix = f".{proto.package}" if proto.package else ""
        stack: List[Tuple[str, descriptor_pb2.DescriptorProto]] = [
            (f"{prefix}.{m.name}", m) for m in proto.message_type]
        while stack:
            full, message = stack.pop()
            owner[full] = proto.name
            stack.extend((f"{full}.{n.name}", n) for n in message.nested_type)
    comments = _comments(file)

    def location(full_name: str) -> Tuple[str, str]:
        proto = files[owner[full_name]]
        local = full_name[len(proto.package) + 2:] if proto.package else full_name[1:]
        return module(proto.name), local

    used = {module(file.name)}
    for service in file.service:
        for method in service.method:
            used.add(location(method.input_type)[0])
            used.add(location(method.output_type)[0])
    aliases = _aliases(sorted(used))

    def python_type(full_name: str) -> str:
        module, local = location(full_name)
        return f"{aliases[module]}.{local}"

    services = []
    for s_index, service in enumerate(file.service):
        methods = []
        for m_index, method in enumerate(service.method):
            methods.append(MethodModel(
                method.name, snake_case(method.name), python_type(method.input_type),
                python_type(method.output_type), method.server_streaming, _pattern(method),
                comments.get((_SERVICE_FIELD, s_index, _METHOD_FIELD, m_index), "")))
        full_name = f"{file.package}.{service.name}" if file.package else service.name
        services.append(ServiceModel(service.name, full_name,
                                     comments.get((_SERVICE_FIELD, s_index), ""), tuple(methods)))
    own = module(file.name)
    return FileModel(file.name, own, tuple(sorted(aliases.items())), tuple(services))


def _aliases(modules: List[str]) -> Dict[str, str]:
    """Short, stable import aliases: `_orders_pb2`, then `_orders_pb2_2` on a clash."""
    aliases: Dict[str, str] = {}
    taken: Dict[str, int] = {}
    for module in modules:
        base = "_" + module.rpartition(".")[2]
        taken[base] = taken.get(base, 0) + 1
        aliases[module] = base if taken[base] == 1 else f"{base}_{taken[base]}"
    return aliases
