"""What the real-browser tests share: Debian's chromium (never a downloaded browser), its flags, and
a free localhost port. Importing this module skips the importing test file when chromium is absent,
except where PROXYLAB_REQUIRE_BROWSER=1 (CI), where that is an error."""
import os
import shutil
import socket
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]

if CHROMIUM is None:
    if os.environ.get("PROXYLAB_REQUIRE_BROWSER") == "1":
        raise RuntimeError("chromium is required here (PROXYLAB_REQUIRE_BROWSER=1): apt-get install chromium")
    pytest.skip("Debian's chromium is not installed (apt-get install chromium)", allow_module_level=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
