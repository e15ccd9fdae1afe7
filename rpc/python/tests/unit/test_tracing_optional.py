"""Tracing is an extra: onedrive_rpc imports without OpenTelemetry, and
onedrive_rpc.tracing says how to get it (a child process where importing
opentelemetry fails, whether or not it is installed here)."""
from __future__ import annotations

import subprocess
import sys

from onedrive_rpc.testing.helpers import child_env

WITHOUT_OTEL = """
import sys
sys.modules["opentelemetry"] = None  # as if it were not installed
import onedrive_rpc
assert not [name for name in sys.modules if name.startswith("opentelemetry.")]
try:
    import onedrive_rpc.tracing
except ImportError as exc:
    print(exc)
else:
    print("imported")
"""


def test_onedrive_rpc_imports_without_opentelemetry_and_tracing_says_what_to_install():
    result = subprocess.run([sys.executable, "-c", WITHOUT_OTEL], env=child_env(),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "pip install onedrive-rpc[otel]" in result.stdout
