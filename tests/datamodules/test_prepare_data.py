"""prepare_data against a local HTTP server (127.0.0.1): download, resume, unpack, verify;
corrupt archives and wrong layouts leave the destination untouched."""

import io
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from PIL import Image

from datamodules.datasets import DatasetLayoutError
from datamodules.datasets.vimeo import scan_vimeo
from datamodules.prepare_data import (
    BadArchiveError,
    DownloadError,
    download,
    main,
    prepare,
)


def png_bytes(value: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((4, 6, 3), value, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def vimeo_zip(with_lists: bool = True) -> bytes:
    """A tiny vimeo_septuplet.zip in the official layout: 2 clips, one per list."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        for clip in ("00001/0001", "00001/0002"):
            for index in range(1, 8):
                bundle.writestr(f"vimeo_septuplet/sequences/{clip}/im{index}.png", png_bytes(index))
        if with_lists:
            bundle.writestr("vimeo_septuplet/sep_trainlist.txt", "00001/0001\n")
            bundle.writestr("vimeo_septuplet/sep_testlist.txt", "00001/0002\n")
        bundle.writestr("__MACOSX/._junk", b"")
    return buffer.getvalue()


class FileServer:
    """Serves ``files`` (name -> bytes) with HTTP Range support; records request headers.
    ``truncate`` names files sent with a full Content-Length but only half their bytes."""

    def __init__(self, files: dict[str, bytes], truncate: tuple[str, ...] = ()):
        self.files, self.truncate, self.requests = files, truncate, []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_GET(self):
                name = self.path.lstrip("/")
                server.requests.append((name, self.headers.get("Range")))
                if name not in server.files:
                    self.send_error(404)
                    return
                data, start = server.files[name], 0
                if self.headers.get("Range"):
                    start = int(self.headers["Range"].split("=")[1].split("-")[0])
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2] if name in server.truncate else body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def serve():
    """``serve(files, truncate=())`` starts a FileServer that stops after the test."""
    servers = []

    def start(files: dict[str, bytes], truncate: tuple[str, ...] = ()) -> FileServer:
        servers.append(FileServer(files, truncate).__enter__())
        return servers[-1]

    yield start
    for server in servers:
        server.__exit__(None, None, None)


def test_download_unpack_verify_and_report(tmp_path, capsys, serve):
    dest = tmp_path / "data"
    server = serve({"vimeo_septuplet.zip": vimeo_zip()})
    (place,) = prepare("vimeo", dest, urls=[server.url + "vimeo_septuplet.zip"])
    assert place == dest / "vimeo_septuplet"
    assert [s.name for s in scan_vimeo(place, "sep_trainlist.txt")] == ["00001/0001"]
    assert sorted(p.name for p in dest.iterdir()) == ["vimeo_septuplet"]  # zip + temp gone
    err = capsys.readouterr().err
    assert "1 train clips, 1 test clips" in err
    assert "official release has 64612 train clips" in err
    assert f"data.root={place.resolve()}" in err
    # a second run finds the verified folder and downloads nothing
    requests = len(server.requests)
    assert prepare("vimeo", dest, urls=[server.url + "vimeo_septuplet.zip"]) == [place]
    assert len(server.requests) == requests


def test_interrupted_download_resumes_with_range(tmp_path, serve):
    data = vimeo_zip()
    part = tmp_path / "vimeo_septuplet.zip.part"
    part.write_bytes(data[:1000])
    server = serve({"v.zip": data})
    target = download(server.url + "v.zip", tmp_path / "vimeo_septuplet.zip", quiet=True)
    assert server.requests == [("v.zip", "bytes=1000-")]
    assert target.read_bytes() == data and not part.exists()


def test_broken_off_download_keeps_part_for_resuming(tmp_path, serve):
    server = serve({"v.zip": vimeo_zip()}, truncate=("v.zip",))
    with pytest.raises(DownloadError, match="run the command again to resume"):
        download(server.url + "v.zip", tmp_path / "v.zip", quiet=True)
    assert (tmp_path / "v.zip.part").stat().st_size > 0
    assert not (tmp_path / "v.zip").exists()


def test_corrupt_archive_leaves_destination_untouched(tmp_path, serve):
    dest = tmp_path / "data"
    dest.mkdir()
    (dest / "other_dataset").mkdir()
    garbage = b"PK\x03\x04" + b"\x00" * 100 + vimeo_zip()[500:2000]
    url = serve({"vimeo_septuplet.zip": garbage}).url + "vimeo_septuplet.zip"
    with pytest.raises(BadArchiveError, match=r"vimeo_septuplet.zip"):
        prepare("vimeo", dest, urls=[url], quiet=True)
    assert sorted(p.name for p in dest.iterdir()) == ["other_dataset"]
    fresh = tmp_path / "fresh"
    with pytest.raises(BadArchiveError):
        prepare("vimeo", fresh, urls=[url], quiet=True)
    assert not fresh.exists()


def test_wrong_layout_is_named_and_nothing_is_moved(tmp_path, serve):
    dest = tmp_path / "data"
    url = serve({"v.zip": vimeo_zip(with_lists=False)}).url + "v.zip"
    with pytest.raises(DatasetLayoutError, match=r"expected Vimeo-90K .*sep_trainlist.txt"):
        prepare("vimeo", dest, urls=[url], quiet=True)
    assert not dest.exists()


def test_local_tar_archive_and_unpacked_folder(tmp_path):
    source = tmp_path / "Set8"
    for sequence in ("hypersmooth", "tractor"):
        (source / sequence).mkdir(parents=True)
        for index in range(3):
            (source / sequence / f"{index:05d}.png").write_bytes(png_bytes(index))
    archive = tmp_path / "testset_Set8.tar.gz"
    with tarfile.open(archive, "w:gz") as bundle:
        bundle.add(source, arcname="Set8")
    (place,) = prepare("set8", tmp_path / "data", archives=[archive], quiet=True)
    assert place == tmp_path / "data" / "Set8"
    assert sorted(p.name for p in place.iterdir()) == ["hypersmooth", "tractor"]
    assert archive.exists()  # the user's own file is never deleted
    # an already unpacked folder is verified in place
    assert prepare("set8", tmp_path / "unused", archives=[source], quiet=True) == [source]
    assert not (tmp_path / "unused").exists()


def test_cli_manual_instructions_and_errors(tmp_path, capsys, serve):
    assert main(["revide"]) == 2
    assert "xinyizhang.tech/revide" in capsys.readouterr().err
    assert main(["set8", "--dest", str(tmp_path), "--archive", str(tmp_path / "nope.zip")]) == 1
    assert "archive not found" in capsys.readouterr().err
    assert main(["set8", "--dest", str(tmp_path), "--url", serve({}).url + "missing"]) == 1
    assert "HTTP 404" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_cli_davis_two_archives(tmp_path, capsys, serve):
    def davis_zip(names: list[str], list_name: str) -> bytes:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as bundle:
            for name in names:
                for index in range(2):
                    path = f"DAVIS/JPEGImages/480p/{name}/{index:05d}.jpg"
                    bundle.writestr(path, png_bytes(index))
            bundle.writestr(f"DAVIS/ImageSets/2017/{list_name}", "".join(n + "\n" for n in names))
            if list_name == "train.txt":
                bundle.writestr("DAVIS/ImageSets/2017/val.txt", "")
        return buffer.getvalue()

    files = {
        "trainval.zip": davis_zip(["bear", "cows"], "train.txt"),
        "testdev.zip": davis_zip(["carousel"], "test-dev.txt"),
    }
    server = serve(files)
    urls = ["--url", server.url + "trainval.zip", "--url", server.url + "testdev.zip"]
    assert main(["davis", "--dest", str(tmp_path), *urls]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["DAVIS", "DAVIS-test-dev"]
    err = capsys.readouterr().err
    assert "2 trainval sequences" in err and "1 test-dev sequences" in err
    assert f"data.test_sequences.root={(tmp_path / 'DAVIS-test-dev').resolve()}" in err
