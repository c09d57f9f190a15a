"""What every command shares: exit statuses and error reporting, JSON output, the reader and the confirmation a
site-wide change needs, the model option, the request a command works in (store, model, point, reader), folders it
writes, a progress bar and the confidence-interval format."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable

from ..cases.store import CaseStore
from ..dicom.pacs import PacsServer
from ..errors import CXRError, report_errors
from ..request import Request
from ..settings import current

# Exit statuses: 0 success; 1 a confirmation was declined (nothing changed); 2 an input failed or the arguments
# are bad (a CXRError, or argparse's own usage error).
EXIT_OK = 0
EXIT_NOT_CONFIRMED = 1
EXIT_FAILED = 2

MODEL_HELP = "a model folder or a registered model id (default: the active model)"

Command = Callable[[argparse.Namespace], int]


def run_command(command: Command, args: argparse.Namespace) -> int:
    """Run a parsed command: a CXRError becomes one line on stderr and exit status 2, never a traceback."""
    return report_errors(lambda: int(command(args)))


def status(failed: int) -> int:
    """The exit status of a command over many inputs: 2 when any of them failed."""
    return EXIT_FAILED if failed else EXIT_OK


def print_json(value: Any, indent: int | None = None, flush: bool = False) -> None:
    """One JSON document on stdout (one line unless indented)."""
    print(json.dumps(value, indent=indent), flush=flush)


def add_model_option(parser: argparse.ArgumentParser, prefix: str = "") -> None:
    """--model: a folder, an id or (absent) the site's active model (cxr_core.site.models.model_for)."""
    parser.add_argument("--model", help=prefix + MODEL_HELP)


def confirm(question: str, yes: bool, change: str = "A site-wide change") -> bool:
    """A site-wide change is confirmed: --yes, or y at a terminal (never silently without one)."""
    if yes:
        return True
    if not sys.stdin.isatty():
        raise CXRError(f"{change} needs a confirmation: run it in a terminal, or add --yes.")
    return input(question).strip().lower() in ("y", "yes")


NOT_KEPT = "Results are not kept as cases; the model's own threshold decides."


def command_request(model: str | None, reader: str = "", note: str | None = NOT_KEPT) -> Request:
    """The request a command works in (cxr_core.request): the case store (or None where it does not open, said on
    stderr with `note`; `note=None`: silently, for a command that keeps no cases), the model (--model, else the
    site's), the point that decides with it, and the reader."""
    try:
        store = CaseStore.open()
    except CXRError as exc:
        if note is not None:
            print(f"Note: {exc} {note}", file=sys.stderr)
        store = None
    return Request.resolve(store, model, reader)


def pacs_server(url: str, user: str | None) -> PacsServer:
    """A DICOMweb server; the password comes from $CXR_PACS_PASSWORD (Settings), only with a user."""
    return PacsServer(url, user, current().pacs_password if user else None)


def prepare_dir(path: str) -> Path:
    """The folder a command writes into, created; a one-line error where it cannot be."""
    d = Path(path)
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CXRError(f"Cannot create the folder {path!r}: {exc.strerror}.") from None
    return d


class Progress:
    """A one-line progress bar on stderr (for more than 5 files)."""

    def __init__(self, total: int):
        self.total = total

    def __call__(self, done: int) -> None:
        filled = int(30 * done / self.total)
        sys.stderr.write(f"\r[{'#' * filled}{'.' * (30 - filled)}] {done}/{self.total}")
        sys.stderr.flush()

    def close(self) -> None:
        sys.stderr.write("\n")
