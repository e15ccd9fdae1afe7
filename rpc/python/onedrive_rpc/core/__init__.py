"""Pure protocol logic: framing and session state machines, no I/O, no clock."""
