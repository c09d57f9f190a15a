"""Find the inputs behind command-line paths: files as given, folders walked by content.

Hospitals and CDs export DICOM without a file extension, so a walked folder is read by content; a
DICOMDIR is read with pydicom's FileSet and its referenced instances are added. Nothing is dropped
silently: a walked file is skipped (and counted) only when it is plainly not an image (the DICOMDIR
itself, hidden files such as .DS_Store, documents such as .txt or .xml, by name); every other file is an
input, so one that cannot be read fails with its reason. A file named explicitly is always kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from .imaging import sniff_format

SNIFF_BYTES = 64 * 1024
# Plainly not images: documents, and the viewer programs hospital CDs carry beside the DICOM files.
DOCUMENT_SUFFIXES = frozenset({".txt", ".xml", ".json", ".csv", ".tsv", ".md", ".html", ".htm", ".log", ".ini",
                               ".cfg", ".pdf", ".rtf", ".doc", ".docx", ".nfo", ".inf", ".url", ".lnk",
                               ".exe", ".dll", ".sys", ".msi", ".cab", ".bat", ".cmd", ".sh", ".jar", ".class",
                               ".js", ".css", ".xsl", ".xslt", ".dtd", ".xsd", ".ico", ".ttf", ".otf", ".db",
                               ".plist", ".dylib", ".so", ".zip"})


@dataclass
class Discovered:
    items: list[tuple[str, Path]] = field(default_factory=list)  # (display name, path), in order, no duplicates
    skipped: int = 0  # files in walked folders that are not images


def is_image_file(path: Path) -> bool:
    """True when the file's first bytes say JPEG, PNG, DICOM (with or without preamble) or another image."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(SNIFF_BYTES)
    except OSError:
        return False
    return sniff_format(head) is not None and not _is_dicomdir(head)


def is_walked_input(path: Path) -> bool:
    """In a walked folder: an image, or any file that is not plainly something else (hidden, a document). A bare
    DICOM whose header outgrows the sniffed bytes (long private sequences) is thus still read, whole, by the loader."""
    if is_image_file(path):
        return True
    return not (path.name.startswith(".") or path.suffix.lower() in DOCUMENT_SUFFIXES)


def dicomdir_members(path: Path) -> list[Path]:
    """The files a DICOMDIR references (empty when it cannot be read as a File-set)."""
    from pydicom.fileset import FileSet  # lazy: heavy

    try:
        return [Path(instance.path) for instance in FileSet(path)]
    except Exception:  # a damaged DICOMDIR: its folder is still walked
        return []


def collect_inputs(paths: Iterable[str | Path]) -> Discovered:
    out = Discovered()
    seen: set[Path] = set()

    def add(path: Path) -> None:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            out.items.append((str(path), path))

    for p in map(Path, paths):
        if not p.is_dir():
            if p.name.upper() == "DICOMDIR" and p.is_file():
                for member in dicomdir_members(p):
                    add(member)
            else:
                add(p)
            continue
        for f in sorted(x for x in p.rglob("*") if x.is_file()):
            if f.name.upper() == "DICOMDIR":
                for member in dicomdir_members(f):
                    if member.is_file() and is_image_file(member):
                        add(member)
                out.skipped += 1
            elif is_walked_input(f):
                add(f)
            else:
                out.skipped += 1
    return out


def _is_dicomdir(head: bytes) -> bool:
    # Media Storage Directory Storage SOP class, in the file meta of a DICOMDIR.
    return b"1.2.840.10008.1.3.10" in head[:1024]
