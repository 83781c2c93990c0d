"""scripts/prereqs.sh, which `make test` runs first: a missing tool is named, with the command
that installs it, before anything else happens."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "prereqs.sh"


def test_missing_tools_are_named_with_the_command_that_installs_them(tmp_path: Path) -> None:
    # A PATH with Python and the shell's helpers only: no pgbackrest, node or runuser on it.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3").symlink_to(sys.executable)
    for tool in ("id",):
        found = shutil.which(tool)
        assert found, tool
        (bin_dir / tool).symlink_to(found)
    result = subprocess.run(
        ["/bin/sh", str(SCRIPT)],
        env={"PATH": str(bin_dir), "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert "pgbackrest on PATH (Debian package pgbackrest)" in result.stderr
    assert "node on PATH (Debian package nodejs)" in result.stderr
    install = [line for line in result.stderr.splitlines() if "apt-get install -y" in line]
    assert len(install) == 1 and "pgbackrest" in install[0] and "nodejs" in install[0]
    sudo = "" if os.geteuid() == 0 else "sudo "
    assert install[0].strip().startswith(f"{sudo}apt-get update && {sudo}apt-get install -y")


def test_a_complete_machine_passes_silently() -> None:
    result = subprocess.run(
        ["/bin/sh", str(SCRIPT)], capture_output=True, text=True, timeout=30, check=False
    )
    assert (result.returncode, result.stderr) == (0, "")
