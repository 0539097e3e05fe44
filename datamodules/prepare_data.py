"""Download, unpack and verify a dataset in its official layout; print where data.root goes.

    python -m datamodules.prepare_data vimeo                       # -> data/vimeo_septuplet
    python -m datamodules.prepare_data davis --dest /datasets      # trainval + test-dev zips
    python -m datamodules.prepare_data revide --archive REVIDE_indoor.zip   # manual download

Direct links (Vimeo-90K, DAVIS, Set8) are streamed to ``<dest>/<file>.part`` and renamed when
complete; an interrupted download resumes where it stopped (HTTP Range). Sets only shared
through Google Drive/Baidu (NTURain, RainSyn, REVIDE) print the manual steps; pass the
downloaded file (zip/tar) or an unpacked folder with ``--archive``.

An archive is unpacked into a temporary folder inside ``dest``, checked by running the
dataset's scanner on it, and only then moved to ``<dest>/<folder>``: a corrupt archive or a
wrong layout raises one error and leaves nothing half-written at the destination.
"""

from __future__ import annotations

import argparse
import http.client
import shutil
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from datamodules.datasets import DatasetLayoutError, MissingDataError
from datamodules.datasets.davis import scan_davis
from datamodules.datasets.nturain import scan_nturain
from datamodules.datasets.rainsyn import scan_rainsyn
from datamodules.datasets.revide import scan_revide
from datamodules.datasets.set8 import scan_set8
from datamodules.datasets.vimeo import scan_vimeo

CHUNK_BYTES = 1 << 20
TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")


class DownloadError(RuntimeError):
    """A download failed (no network, HTTP error, or the transfer stopped early)."""


class BadArchiveError(DatasetLayoutError):
    """An archive is not a readable zip/tar file (corrupt, truncated or another format)."""


# --------------------------------------------------------------------------- verification
def _verify_vimeo(root: Path) -> dict[str, int]:
    return {
        "train clips": len(scan_vimeo(root, "sep_trainlist.txt")),
        "test clips": len(scan_vimeo(root, "sep_testlist.txt")),
    }


def _verify_davis_trainval(root: Path) -> dict[str, int]:
    return {"trainval sequences": len(scan_davis(root, split="trainval"))}


def _verify_davis_test_dev(root: Path) -> dict[str, int]:
    return {"test-dev sequences": len(scan_davis(root, split="test-dev"))}


def _verify_set8(root: Path) -> dict[str, int]:
    return {"sequences": len(scan_set8(root))}


def _verify_nturain(root: Path) -> dict[str, int]:
    sequences = scan_nturain(root, unpaired="include")
    paired = sum(sequence.gt is not None for sequence in sequences)
    return {"rain/GT pairs": paired, "real-rain sequences": len(sequences) - paired}


def _verify_splits(scan: Callable, splits: tuple[str, ...]) -> Callable[[Path], dict[str, int]]:
    """Count pairs per split; a split may be missing (test-only packages), not all of them."""

    def verify(root: Path) -> dict[str, int]:
        counts, errors = {}, []
        for split in splits:
            try:
                counts[f"{split} pairs"] = len(scan(root, split=split))
            except MissingDataError as error:
                errors.append(error)
        if not counts:
            raise errors[0]
        return counts

    return verify


@dataclass(frozen=True)
class Archive:
    """One archive of a dataset and the folder it becomes under ``dest``."""

    folder: str  # final folder name under dest (what data.root points at)
    verify: Callable[[Path], dict[str, int]]  # runs the scanner(s); returns counts
    url: str | None = None  # direct link; None: manual download only
    expected: dict[str, int] = field(default_factory=dict)  # counts of the official release
    config_keys: tuple[str, ...] = ("data.root",)  # config keys that should point at it


@dataclass(frozen=True)
class DatasetSpec:
    title: str
    archives: tuple[Archive, ...]
    manual: str | None = None  # instructions when there is no direct link


DAVIS_URL = "https://data.vision.ee.ethz.ch/csergi/share/davis/"
DATASETS: dict[str, DatasetSpec] = {
    "vimeo": DatasetSpec(
        "Vimeo-90K septuplet",
        (
            Archive(
                "vimeo_septuplet",
                _verify_vimeo,
                "http://data.csail.mit.edu/tofu/dataset/vimeo_septuplet.zip",
                {"train clips": 64612, "test clips": 7824},
            ),
        ),
    ),
    "davis": DatasetSpec(
        "DAVIS-2017 480p",
        (
            Archive(
                "DAVIS",
                _verify_davis_trainval,
                DAVIS_URL + "DAVIS-2017-trainval-480p.zip",
                {"trainval sequences": 90},
            ),
            Archive(
                "DAVIS-test-dev",
                _verify_davis_test_dev,
                DAVIS_URL + "DAVIS-2017-test-dev-480p.zip",
                {"test-dev sequences": 30},
                ("data.val_sequences.root", "data.test_sequences.root"),
            ),
        ),
    ),
    "set8": DatasetSpec(
        "Set8",
        (
            Archive(
                "Set8",
                _verify_set8,
                "https://github.com/JingyunLiang/VRT/releases/download/v0.0/testset_Set8.tar.gz",
                {"sequences": 8},
            ),
        ),
    ),
    "nturain": DatasetSpec(
        "NTURain",
        (Archive("NTURain", _verify_nturain),),
        manual=(
            "NTURain is published as one RAR archive per sequence in "
            "https://github.com/hotndy/SPAC-SupplementaryMaterials (folders "
            "Dataset_Training_Synthetic/, Dataset_Testing_Synthetic/, Dataset_Testing_RealRain/).\n"
            "  1. Clone or download that repository.\n"
            "  2. Extract every .rar in place (unrar x / 7z x), giving folders such as a1_Rain/ "
            "and a1_GT/ of 00001.jpg, ...\n"
            "  3. Run: python -m datamodules.prepare_data nturain --archive <folder holding the "
            "three Dataset_* folders, or a zip/tar of it>"
        ),
    ),
    "rainsyn": DatasetSpec(
        "RainSynComplex25 / RainSynLight25",
        (Archive("RainSynComplex25", _verify_splits(scan_rainsyn, ("train", "test"))),),
        manual=(
            "RainSynLight25/RainSynComplex25 are shared through Google Drive (file id "
            "1uFir819r0gkcDWbBWvAIhXsU7JdLm-6t) and Baidu, linked from "
            "https://github.com/flyywh/J4RNet-Deep-Video-Deraining-CVPR-2018 (README).\n"
            "  1. Download the archive in a browser.\n"
            "  2. Run: python -m datamodules.prepare_data rainsyn --archive <file> "
            "[--folder RainSynLight25]\n"
            "  Expected inside: [video_rain_*/]{train,test}/input/<id>/ with processed/<id>/ "
            "(or gt/<id>/)."
        ),
    ),
    "revide": DatasetSpec(
        "REVIDE indoor",
        (Archive("REVIDE_indoor", _verify_splits(scan_revide, ("Train", "Test"))),),
        manual=(
            "REVIDE is shared through Google Drive/Baidu links on the project page "
            "http://xinyizhang.tech/revide/ (a Kaggle mirror is named 'revide-indoor').\n"
            "  1. Download REVIDE_indoor in a browser.\n"
            "  2. Run: python -m datamodules.prepare_data revide --archive <file>\n"
            "  Expected inside: {Train,Test}/hazy/<video>/ with gt/<video>/ (or clear/)."
        ),
    ),
}


# --------------------------------------------------------------------------- download
def _say(message: str, quiet: bool, end: str = "\n") -> None:
    if not quiet:
        print(message, end=end, file=sys.stderr, flush=True)


def _mib(size: int) -> str:
    return f"{size / 2**20:,.1f} MiB"


def _stream(response, file, written: int, total: int | None, quiet: bool) -> int:
    """Copy ``response`` into ``file`` in chunks, printing progress; returns bytes written."""
    last_report = 0.0
    while chunk := response.read(CHUNK_BYTES):
        file.write(chunk)
        written += len(chunk)
        if time.monotonic() - last_report > 0.5:
            last_report = time.monotonic()
            share = f" ({100 * written / total:.1f}%)" if total else ""
            of_total = f" of {_mib(total)}" if total else ""
            _say(f"\r  {_mib(written)}{of_total}{share}", quiet, end="")
    _say(f"\r  {_mib(written)} done", quiet)
    return written


def download(url: str, target: Path, quiet: bool = False) -> Path:
    """Stream ``url`` to ``target`` through ``target.part``, resuming a partial ``.part``."""
    if target.is_file():
        _say(f"using the already downloaded {target}", quiet)
        return target
    part = target.with_name(target.name + ".part")
    start = part.stat().st_size if part.is_file() else 0
    headers = {"User-Agent": "ncfl-video-prepare-data"}
    if start:
        headers["Range"] = f"bytes={start}-"
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=60)
    except urllib.error.HTTPError as error:
        if error.code == 416 and start:  # the .part is not a prefix we can extend: start over
            part.unlink()
            return download(url, target, quiet)
        raise DownloadError(f"cannot download {url}: HTTP {error.code} {error.reason}") from error
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise DownloadError(
            f"cannot download {url}: {reason} (no internet access? download it by hand and "
            "pass the file with --archive)"
        ) from error
    with response:
        resumed = start > 0 and response.status == 206
        written = start if resumed else 0
        length = response.headers.get("Content-Length")
        total = written + int(length) if length is not None else None
        _say(f"downloading {url}" + (f" (resuming at {_mib(written)})" if resumed else ""), quiet)
        with open(part, "ab" if resumed else "wb") as file:
            try:
                written = _stream(response, file, written, total, quiet)
            except (http.client.HTTPException, OSError) as error:
                written = file.tell()
                _say("", quiet)
                raise DownloadError(
                    f"download of {url} broke off at {_mib(written)} ({error!r}); run the "
                    f"command again to resume from {part}"
                ) from error
    if total is not None and written != total:
        raise DownloadError(
            f"download of {url} stopped at {written} of {total} bytes; run the command again "
            f"to resume from {part}"
        )
    part.replace(target)
    return target


# --------------------------------------------------------------------------- unpack
def unpack(archive: Path, into: Path) -> None:
    """Extract a zip or tar archive into ``into``; ``BadArchiveError`` naming it otherwise."""
    name = archive.name.lower()
    try:
        if name.endswith(".zip") or (
            not name.endswith(TAR_SUFFIXES) and zipfile.is_zipfile(archive)
        ):
            with zipfile.ZipFile(archive) as bundle:
                bundle.extractall(into)  # zipfile drops absolute and '..' parts of member names
        elif name.endswith(TAR_SUFFIXES) or tarfile.is_tarfile(archive):
            with tarfile.open(archive) as bundle:
                bundle.extractall(into, filter="data")  # refuses links/paths leaving `into`
        else:
            raise BadArchiveError(
                f"{archive} is neither a zip nor a tar archive (expected .zip, .tar, .tar.gz, "
                ".tgz, .tar.bz2 or .tar.xz)"
            )
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error, OSError) as error:
        raise BadArchiveError(
            f"cannot unpack {archive}: {error} (the archive is corrupt or incomplete)"
        ) from error


def dataset_root(unpacked: Path) -> Path:
    """Descend through single top-level folders (``vimeo_septuplet/``, ``DAVIS/``), ignoring
    ``__MACOSX`` and hidden entries, to the folder the scanners expect."""
    root = unpacked
    while True:
        entries = [
            entry
            for entry in root.iterdir()
            if not entry.name.startswith(".") and entry.name != "__MACOSX"
        ]
        if len(entries) == 1 and entries[0].is_dir():
            root = entries[0]
            continue
        if not entries:
            raise BadArchiveError(f"the archive unpacked to nothing usable ({unpacked} is empty)")
        return root


# --------------------------------------------------------------------------- prepare
def _report(title: str, place: Path, archive: Archive, counts: dict[str, int], quiet: bool):
    shown = ", ".join(f"{value} {key}" for key, value in counts.items())
    _say(f"{title}: {place} verified: {shown}", quiet)
    for key, expected in archive.expected.items():
        if counts.get(key) != expected:
            _say(
                f"  note: the official release has {expected} {key}, found {counts.get(key)} "
                "(a subset, or an incomplete download)",
                quiet,
            )


def prepare_archive(
    title: str,
    archive: Archive,
    dest: Path,
    source: Path | None = None,
    url: str | None = None,
    folder: str | None = None,
    keep_archive: bool = False,
    quiet: bool = False,
) -> tuple[Path, dict[str, int]]:
    """Make ``<dest>/<folder>`` hold a verified copy of one archive; returns it and its counts.

    ``source`` is a local archive file or an already unpacked folder (verified in place and
    returned as is); otherwise ``url`` (default: the archive's official link) is downloaded.
    """
    final = dest / (folder or archive.folder)
    if source is not None and Path(source).is_dir():
        source = Path(source)
        root = dataset_root(source)
        counts = archive.verify(root)
        _report(title, root, archive, counts, quiet)
        return root, counts
    if final.exists():
        counts = archive.verify(final)
        _report(title, final, archive, counts, quiet)
        _say(f"  {final} already exists; nothing downloaded", quiet)
        return final, counts
    url = url or archive.url
    if source is None and url is None:
        raise ValueError(f"{title}: no direct download link; pass the downloaded file --archive")
    dest_existed = dest.exists()
    dest.mkdir(parents=True, exist_ok=True)
    downloaded = None
    staging = None
    try:
        if source is None:
            file_name = Path(urllib.parse.urlparse(url).path).name or f"{archive.folder}.zip"
            source = downloaded = download(url, dest / file_name, quiet)
        elif not Path(source).is_file():
            raise MissingDataError(f"archive not found: {source}")
        staging = Path(tempfile.mkdtemp(prefix=f".unpacking-{archive.folder}-", dir=dest))
        _say(f"unpacking {source}", quiet)
        unpack(Path(source), staging)
        root = dataset_root(staging)
        try:
            counts = archive.verify(root)
        except DatasetLayoutError as error:
            raise DatasetLayoutError(
                f"{source} does not hold the expected {title} layout: {error}"
            ) from error
        root.replace(final)
    except (DatasetLayoutError, OSError):
        # A complete download that does not unpack or verify must not be reused by the next
        # run. (An interrupted download keeps its .part file so that it can resume.)
        if downloaded is not None and downloaded.exists():
            downloaded.unlink()
        raise
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        if not dest_existed and dest.exists() and not any(dest.iterdir()):
            dest.rmdir()
    if downloaded is not None and not keep_archive:
        downloaded.unlink()
    _report(title, final, archive, counts, quiet)
    return final, counts


def prepare(
    name: str,
    dest: str | Path = "data",
    urls: list[str] | None = None,
    archives: list[str | Path] | None = None,
    folder: str | None = None,
    keep_archive: bool = False,
    quiet: bool = False,
) -> list[Path]:
    """Prepare every archive of dataset ``name``; returns the verified dataset folders.

    ``urls``/``archives`` replace the official links / downloads, one per archive in order.
    Raises ``ValueError`` for a set without direct links when no ``archives`` are given.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    spec = DATASETS[name]
    count = len(spec.archives)
    for option, values in (("--url", urls), ("--archive", archives)):
        if values and len(values) > count:
            raise ValueError(f"{name} has {count} archive(s); got {len(values)} {option} values")
    if folder is not None and count > 1:
        raise ValueError(f"--folder names one folder, but {name} has {count} archives")
    if spec.manual is not None and not archives:
        raise ValueError(f"{spec.title} needs a manual download:\n{spec.manual}")
    results = []
    for index, archive in enumerate(spec.archives):
        source = archives[index] if archives and index < len(archives) else None
        url = urls[index] if urls and index < len(urls) else None
        if source is None and url is None and archive.url is None:
            continue
        place, _ = prepare_archive(
            spec.title, archive, Path(dest), source, url, folder, keep_archive, quiet
        )
        results.append(place)
        keys = " ".join(f"{key}={place.resolve()}" for key in archive.config_keys)
        _say(f"  point the config at it: python train.py data={name} {keys}", quiet)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m datamodules.prepare_data",
        description="Download, unpack and verify a dataset in its official layout.",
    )
    parser.add_argument("name", choices=sorted(DATASETS), help="dataset to prepare")
    parser.add_argument("--dest", default="data", help="folder receiving the dataset (data/)")
    parser.add_argument(
        "--url", action="append", help="download from this URL instead (once per archive)"
    )
    parser.add_argument(
        "--archive",
        action="append",
        help="a downloaded zip/tar (or an unpacked folder) instead of downloading; repeatable",
    )
    parser.add_argument("--folder", help="name of the dataset folder under --dest")
    parser.add_argument("--keep-archive", action="store_true", help="keep the downloaded file")
    parser.add_argument("--quiet", action="store_true", help="print errors only")
    args = parser.parse_args(argv)
    spec = DATASETS[args.name]
    if spec.manual is not None and not args.archive:
        print(f"{spec.title} has no direct download link.\n{spec.manual}", file=sys.stderr)
        return 2
    try:
        prepare(
            args.name, args.dest, args.url, args.archive, args.folder, args.keep_archive, args.quiet
        )
    except (DownloadError, DatasetLayoutError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
