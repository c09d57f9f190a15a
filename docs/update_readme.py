"""Regenerate the README's shipped-model section from the active model's card (so it cannot drift).

    python docs/update_readme.py          # rewrite README.md between the shipped-model markers
    python docs/update_readme.py --check  # exit 1 if README.md is out of date
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cxr_core.model_card import README_END, README_START  # noqa: E402


def generated_readme(readme: str) -> str:
    section = subprocess.run([sys.executable, "-m", "cxr_core", "models", "--markdown"], cwd=ROOT, check=True,
                             capture_output=True, text=True).stdout
    head, _, rest = readme.partition(README_START)
    _, _, tail = rest.partition(README_END)
    if not tail and README_END not in rest:
        raise SystemExit(f"README.md lacks the markers {README_START} ... {README_END}")
    return f"{head}{README_START}\n{section}{README_END}{tail}"


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
