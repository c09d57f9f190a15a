"""Regenerate the README's generated sections (so they cannot drift): the shipped model from the active model's
card, the case store's figures from bench/results/cases.txt (`python bench/cases.py --save`), and the DICOM
report's tree from docs/dicom/sr_tree.txt (`python docs/sr_tree.py`).

    python docs/update_readme.py          # rewrite README.md between the markers
    python docs/update_readme.py --check  # exit 1 if README.md is out of date
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cxr_core.model.card_markdown import README_END, README_START  # noqa: E402


CASES_START, CASES_END = "<!-- case-store-figures:start -->", "<!-- case-store-figures:end -->"
SR_TREE_START, SR_TREE_END = "<!-- sr-tree:start -->", "<!-- sr-tree:end -->"


def shipped_model_section() -> str:
    return subprocess.run([sys.executable, "-m", "cxr_core", "models", "--markdown"], cwd=ROOT, check=True,
                          capture_output=True, text=True).stdout


def case_store_section() -> str:
    """The concurrency and size figures of both databases, as bench/cases.py saved them."""
    lines = (ROOT / "bench" / "results" / "cases.txt").read_text().splitlines()
    fig = dict(line.split(": ", 1) for line in lines if ": " in line)
    num = lambda key: float(fig[key].split()[0])  # noqa: E731
    out = [f"Measured by `{fig['command']}` on {fig['measured_utc'][:10]} ({fig['machine']}; "
           f"{fig['case_pictures']}): {fig['sqlite_sessions']} processes at once each add and review cases.", "",
           "| database | cases/s (add + review) | add p95 | review p95 | lost | database growth per case |",
           "|---|---|---|---|---|---|"]
    for db, name in (("sqlite", "SQLite (WAL), one workstation"), ("postgresql", "PostgreSQL, shared")):
        if f"{db}_lost_cases" not in fig:
            out.append(f"| {name} | not measured | | | | |")
            continue
        out.append(f"| {name} | {num(f'{db}_throughput_add_and_review_per_s'):.1f} | "
                   f"{num(f'{db}_add_latency_p95_s') * 1000:.0f} ms | {num(f'{db}_review_latency_p95_s') * 1000:.0f} ms | "
                   f"{fig[f'{db}_lost_cases']} of {fig[f'{db}_cases_stored_of_expected'].split(' of ')[1]} | "
                   f"{num(f'{db}_bytes_per_case_224px') / 1024:.0f} KiB (224-px film) |")
    out += ["", f"A full-size detector film (2,000 x 2,500 px: a training film resampled, with detector noise) costs "
            f"{num('full_size_film_bytes_per_case') / 1024 ** 2:.1f} MiB per case (its de-identified 8-bit PNG, the "
            f"heatmap and the row): at 100 such films a day the database grows by about "
            f"{num('full_size_film_bytes_per_case') * 100 * 365 / 1024 ** 3:.0f} GiB a year.", ""]
    return "\n".join(out)


def sr_tree_section() -> str:
    """dsrdump's tree of the example report, as docs/sr_tree.py saved it."""
    return "```text\n" + (ROOT / "docs" / "dicom" / "sr_tree.txt").read_text() + "```\n"


def _replace(readme: str, start: str, end: str, section: str) -> str:
    head, _, rest = readme.partition(start)
    _, found, tail = rest.partition(end)
    if not found:
        raise SystemExit(f"README.md lacks the markers {start} ... {end}")
    return f"{head}{start}\n{section}{end}{tail}"


def generated_readme(readme: str) -> str:
    readme = _replace(readme, README_START, README_END, shipped_model_section())
    readme = _replace(readme, CASES_START, CASES_END, case_store_section())
    return _replace(readme, SR_TREE_START, SR_TREE_END, sr_tree_section())


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    new = generated_readme(readme)
    if args.check:
        print("README.md is up to date." if new == readme else "README.md is out of date: run python docs/update_readme.py")
        return 0 if new == readme else 1
    (ROOT / "README.md").write_text(new, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
