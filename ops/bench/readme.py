"""The README's "Measured figures" block, rendered from ``bench.json`` (nothing in it is typed by hand).

    python -m ops.bench.readme            # rewrite the block between the markers from bench.json
    python -m ops.bench.readme --check    # exit 1 when the README's block differs from bench.json's rendering

Also ``cloud-ops bench readme [--check]``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ops.bench.suite import REPO, figures_table, machine_line

BEGIN = "<!-- bench:begin -->"
END = "<!-- bench:end -->"


class ReadmeError(ValueError):
    """The README or bench.json cannot be used (the message names the file)."""


def load_report(path: Path) -> dict[str, Any]:
    try:
        report = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ReadmeError(f"cannot read {path}: {e}") from None
    if not isinstance(report, dict) or "sections" not in report or "machine" not in report:
        raise ReadmeError(f"{path} is not a bench.json written by `cloud-ops bench`")
    return report


def render_block(report: dict[str, Any]) -> str:
    """The text between (and including) the markers."""
    mode = "quick" if report["quick"] else "full"
    lines = [
        BEGIN,
        "<!-- generated from bench.json by `python -m ops.bench.readme`; do not edit by hand -->",
        "",
        f"From `bench.json`, run `{report['run_id']}` ({mode}, {report['started_at']}) on {machine_line(report)}. "
        "Each figure's baseline was measured in the same run; ratio = value / baseline. "
        "Details, versions and the stages of each figure: [BENCHMARKS.md](BENCHMARKS.md).",
        "",
        *figures_table(report),
        END,
    ]
    return "\n".join(lines)


def replace_block(text: str, block: str, where: str = "README.md") -> str:
    if text.count(BEGIN) != 1 or text.count(END) != 1 or text.index(BEGIN) > text.index(END):
        raise ReadmeError(f"{where}: expected one {BEGIN} ... {END} block")
    a, b = text.index(BEGIN), text.index(END) + len(END)
    return text[:a] + block + text[b:]


def current_block(text: str, where: str = "README.md") -> str:
    replace_block(text, "", where)  # validates the markers
    return text[text.index(BEGIN) : text.index(END) + len(END)]


def update(readme: Path, bench_json: Path, *, check: bool = False) -> bool:
    """Rewrite (or with ``check`` only compare) the README's block; True when it differed."""
    try:
        text = readme.read_text()
    except OSError as e:
        raise ReadmeError(f"cannot read {readme}: {e}") from None
    new = replace_block(text, render_block(load_report(bench_json)), str(readme))
    if new == text:
        return False
    if not check:
        readme.write_text(new)
    return True


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bench-json", type=Path, default=REPO / "bench.json")
    ap.add_argument("--readme", type=Path, default=REPO / "README.md")
    ap.add_argument("--check", action="store_true", help="compare only; exit 1 when the block is out of date")
    a = ap.parse_args(argv)
    try:
        changed = update(a.readme, a.bench_json, check=a.check)
    except ReadmeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if a.check:
        print(f"{a.readme}: {'out of date with' if changed else 'matches'} {a.bench_json}")
        return 1 if changed else 0
    print(f"{a.readme}: {'updated from' if changed else 'already matches'} {a.bench_json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
