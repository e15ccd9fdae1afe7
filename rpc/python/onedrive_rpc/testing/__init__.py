"""Test helpers that ship with the package, for our tests and users' tests.

`echo_service.EchoService`: a reference implementation of
`onedrive_rpc.testing.Echo` (echo_pb2) that counts what it ran.
`process.ServerProcess`: a server in a child OS process, for tests that
need a real peer to kill, stop or cut off.
"""
