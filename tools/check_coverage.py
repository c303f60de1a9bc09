"""Fail when a package's branch coverage in a Cobertura XML report is under a threshold.

Usage: check_coverage.py REPORT PACKAGE_PATH PERCENT
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET


def main() -> int:
    report, prefix, threshold = sys.argv[1], sys.argv[2].rstrip("/") + "/", float(sys.argv[3])
    root = ET.parse(report).getroot()  # noqa: S314
    lines_valid = lines_hit = branches_valid = branches_hit = 0
    for cls in root.iter("class"):
        filename = cls.get("filename", "")
        if not filename.replace("\\", "/").startswith(prefix) and f"/{prefix}" not in filename:
            continue
        for line in cls.iter("line"):
            lines_valid += 1
            lines_hit += int(line.get("hits", "0")) > 0
            cond = line.get("condition-coverage")
            if cond:
                # "75% (3/4)"
                hit, total = cond.split("(")[1].rstrip(")").split("/")
                branches_hit += int(hit)
                branches_valid += int(total)
    if lines_valid == 0:
        print(f"coverage: no files under {prefix} in {report}")
        return 1
    total = lines_valid + branches_valid
    percent = 100.0 * (lines_hit + branches_hit) / total
    print(
        f"coverage of {prefix}: {percent:.1f}% "
        f"(lines {lines_hit}/{lines_valid}, branches {branches_hit}/{branches_valid})"
    )
    if percent < threshold:
        print(f"coverage of {prefix} is under {threshold}%")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
