"""Checks a fastops wheel's metadata: its runtime requirements are exactly numpy and the torch
release it was built against (scripts/wheel_check.sh).

    python build_support/check_wheel_metadata.py dist/fastops-*.whl 2.14.1
"""

from __future__ import annotations

import sys
import zipfile
from email.parser import Parser


def runtime_requirements(wheel: str) -> list[str]:
    """The wheel's Requires-Dist entries that no extra guards."""
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        metadata = Parser().parsestr(archive.read(name).decode())
    return sorted(r for r in metadata.get_all("Requires-Dist", []) if "extra ==" not in r)


def main(wheel: str, torch_version: str) -> None:
    found = runtime_requirements(wheel)
    expected = sorted(["numpy", f"torch=={torch_version}"])
    if found != expected:
        sys.exit(f"{wheel}: runtime requirements {found}, expected {expected}")
    print(f"wheel metadata: requires {', '.join(found)}")


if __name__ == "__main__":
    main(*sys.argv[1:])
