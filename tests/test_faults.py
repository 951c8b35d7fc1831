"""Faults and hostile input through the app: each is refused with a clear message and the app keeps working.

The fast part of the reliability suite (the README's "Reliability" table lists every case). The many-session
load test is in test_browser.py; the hour-long start/stop soak is ``bench/soak.py``.
"""

import gzip
import hashlib
import io
import os
import pickle
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest
from test_app import APP, button, reset_runs, wait_for_step

from vmonf import data
from vmonf.data import make_toy, write_idx

CSV = "your own CSV file"


def csv_text(x, y=None) -> bytes:
    rows = [f"{a:.5f},{b:.5f}" + ("" if y is None else f",{c}") for (a, b), c in zip(x, y if y is not None else x,
                                                                                     strict=True)]
    return ("\n".join(rows) + "\n").encode()


GOOD_X, GOOD_Y = make_toy("moons", 300, seed=0)
GOOD = csv_text(GOOD_X)
HOSTILE_CSVS = {  # name -> (file contents, words the message must contain)
    "text": (b"x,y\n" + b"1,2\n" * 12 + b"3,oops\n", "'oops' is not a number"),
    "NaN": (GOOD + b"nan,1\n", "NaN or infinity"),
    "inf": (GOOD + b"1,-inf\n", "NaN or infinity"),
    "one column": (b"\n".join(b"%d" % i for i in range(30)), "Expected 2 columns"),
    "a million rows": (b"1,2\n" * 1_000_000, "at most 20,000"),
    "empty": (b"", "empty"),
    "huge (6 MB)": (b"1.000000000,2.000000000\n" * 260_000, "limit is 5 MB"),
    "binary": (os.urandom(4096), "not a text CSV"),
}


@pytest.fixture
def app():
    at = AppTest.from_file(APP, default_timeout=60)
    yield at
    reset_runs(at)


def upload(at: AppTest, name: str, blob: bytes) -> None:
    at.sidebar.get("file_uploader")[0].set_value((name, blob, "text/csv")).run()


@pytest.mark.parametrize("case", list(HOSTILE_CSVS))
def test_hostile_csv_is_refused_and_the_app_keeps_working(app, case):
    blob, words = HOSTILE_CSVS[case]
    app.run()
    app.sidebar.selectbox(key="toy_dataset").set_value(CSV).run()
    upload(app, "bad.csv", blob)
    assert not app.exception
    errors = [e.value for e in app.error]
    assert any("bad.csv cannot be used" in e and words in e for e in errors), errors
    assert not any(b.label == "Start" for b in app.button)  # nothing to train on
    upload(app, "good.csv", GOOD)  # the same session goes on with a good file
    assert not app.exception and not app.error
    assert any(b.label == "Start" and not b.disabled for b in app.button)


def test_k_can_never_exceed_the_points(app):
    app.run()
    app.sidebar.selectbox(key="toy_dataset").set_value(CSV).run()
    upload(app, "big.csv", GOOD)
    app.sidebar.slider(key=f"toy_k_{CSV}").set_value(12).run()
    upload(app, "tiny.csv", csv_text(GOOD_X[:10]))  # 10 points, while K was 12
    assert not app.exception
    k = app.sidebar.slider(key=f"toy_k_{CSV}")
    assert k.value == 10 and k.max == 10


def test_impossible_k_or_depth_in_a_link_is_named(app):
    app.query_params.update({"ds": "moons", "k": "5000", "depth": "0"})
    app.run()
    assert not app.exception
    text = " ".join(w.value for w in app.warning)
    assert "k='5000'" in text and "depth='0'" in text
    assert app.sidebar.slider(key="toy_depth").value >= 1


class Exploit:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def run_file(model_pt: bytes | None) -> bytes:
    """A minimal valid .vmonf file whose model.pt is ``model_pt``."""
    from test_export import make_run  # a short real recording

    from vmonf.studio.runfile import run_bytes

    run = make_run()
    run.checkpoint = model_pt
    return run_bytes(run)


def test_replay_refuses_corrupt_and_code_carrying_models(app, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    app.switch_page("pages/replay.py").run()
    app.radio(key="replay_source").set_value("a saved run file").run()
    cases = {
        "evil.pt": (pickle.dumps(Exploit()), "never run"),
        "corrupt.pt": (b"PK\x03\x04 not really a zip", "corrupt"),
        "evil.vmonf": (run_file(pickle.dumps(Exploit())), "never run"),
        "cut.vmonf": (run_file(None)[:300], "corrupt or incomplete"),
    }
    for name, (blob, words) in cases.items():
        app.get("file_uploader")[0].set_value((name, blob, "application/octet-stream")).run()
        assert not app.exception, name
        assert any(words in e.value for e in app.error), (name, [e.value for e in app.error])
    assert not (tmp_path / "pwned").exists(), "a crafted checkpoint ran code"
    # A good run file still opens, with the checked model described.
    from vmonf.checkpoint import checkpoint_bytes
    from vmonf.model import ModelConfig, VMoNFModel

    good = run_file(checkpoint_bytes(VMoNFModel(ModelConfig(2, 2))))
    app.get("file_uploader")[0].set_value(("good.vmonf", good, "x")).run()
    assert not app.exception and not app.error
    assert any("K=2 realnvp flows" in s.value for s in app.success)
    assert app.get("plotly_chart")


class _CutOffHandler(BaseHTTPRequestHandler):
    """Announces each file whole, then sends a third of it and closes: a truncated download."""

    files: dict[str, bytes] = {}

    def do_GET(self):  # noqa: N802 (http.server's name)
        body = self.files.get(self.path.lstrip("/"))
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: len(body) // 3])
        self.wfile.flush()
        self.close_connection = True

    def log_message(self, *args):
        pass


@pytest.fixture
def cut_off_mnist(tmp_path, monkeypatch):
    """A loopback 'MNIST mirror' whose downloads stop short; the cache is an empty temp folder."""
    files, md5 = {}, {}
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 60), ("t10k", 20)):
        for kind, arr in (("images-idx3", rng.integers(0, 255, (n, 28, 28))), ("labels-idx1", np.arange(n) % 10)):
            buf = io.BytesIO()
            with gzip.GzipFile(fileobj=buf, mode="wb") as g:
                path = tmp_path / "tmp.idx"
                write_idx(path, arr)
                g.write(path.read_bytes())
            name = f"{prefix}-{kind}-ubyte.gz"
            files[name], md5[name] = buf.getvalue(), hashlib.md5(buf.getvalue()).hexdigest()
    _CutOffHandler.files = files
    server = ThreadingHTTPServer(("127.0.0.1", 0), _CutOffHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    source = data.IdxSource("mnist", (f"http://127.0.0.1:{server.server_address[1]}/",), md5)
    monkeypatch.setattr(data.images, "MNIST", source)  # what load_mnist reads
    monkeypatch.setattr(data, "MNIST", source)  # and what the images page offers to download
    monkeypatch.setenv("VMONF_DATA", str(tmp_path / "cache"))
    yield tmp_path / "cache" / "mnist"
    server.shutdown()


def test_cut_off_download_is_refused_and_leaves_nothing(cut_off_mnist):
    with pytest.raises(ValueError, match="cut off|stopped after"):
        data.load_mnist(source="full", download=True)
    assert not cut_off_mnist.exists() or not any(cut_off_mnist.iterdir())


def test_truncated_mnist_download_in_the_app(app, cut_off_mnist):
    app.switch_page("pages/images.py").run()
    app.sidebar.selectbox(key="img_source").set_value("MNIST: all 70,000 digits").run()
    button(app, "Download now").click().run()
    assert not app.exception
    assert any("The download failed" in e.value and ("cut off" in e.value or "stopped after" in e.value)
               for e in app.error), [e.value for e in app.error]
    assert not any(cut_off_mnist.iterdir()), "a partial file was left in the cache"
    # The page still works: the built-in digits train.
    app.sidebar.selectbox(key="img_source").set_value("scikit-learn digits (8×8)").run()
    button(app, "Start").click().run()
    wait_for_step(app, 1, timeout=90)
    assert not app.exception
