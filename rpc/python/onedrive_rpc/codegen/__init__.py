"""Code generation: a protoc plugin that turns services into typed stubs.

    python -m onedrive_rpc.codegen -I protos --out gen protos/sync.proto
    protoc --plugin=protoc-gen-onedrive_rpc=$(which protoc-gen-onedrive_rpc) \\
           --onedrive_rpc_out=gen -I protos protos/sync.proto

The command finds onedrive_rpc/options.proto and protovalidate's
buf/validate/validate.proto (message rules) by itself; protoc users put them
on their own include path.

For each .proto with services it writes `<file>_rpc.py` (a `FooBase`
service class and a `FooClient` per service) and `<file>_rpc.pyi`. The
plugin is main (plugin.py) -> model (model.py) -> pure render (render.py).
"""
