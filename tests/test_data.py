"""Data: deterministic toy sets, the IDX reader, downloads that verify and never leave corrupt files."""

import gzip
import hashlib
import json
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from vmonf import data
from vmonf.__main__ import main
from vmonf.studio import uploads


@pytest.mark.parametrize("name", list(data.TOY_DATASETS))
def test_toy_sets_are_seeded_and_labelled(name):
    x, y = data.make_toy(name, 300, seed=4)
    x2, y2 = data.make_toy(name, 300, seed=4)
    x3, _ = data.make_toy(name, 300, seed=5)
    assert x.shape == (300, 2) and x.dtype == np.float32 and y.shape == (300,)
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)
    assert not np.array_equal(x, x3)
    assert np.isfinite(x).all() and len(np.unique(y)) >= 2


def test_unknown_toy_set():
    with pytest.raises(ValueError, match="Unknown data set"):
        data.make_toy("nope")


def fake_idx_folder(folder, n=30, gz=True):
    rng = np.random.default_rng(0)
    suffix = ".gz" if gz else ""
    for prefix in ("train", "t10k"):
        data.write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", rng.integers(0, 256, (n, 28, 28)))
        data.write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", rng.integers(0, 10, n))


@pytest.mark.parametrize("gz", [True, False])
def test_idx_round_trip_from_folder(tmp_path, gz):
    fake_idx_folder(tmp_path, gz=gz)
    x, y, shape = data.load_mnist(source="full", folder=tmp_path)
    assert x.shape == (60, 784) and y.shape == (60,) and shape == (28, 28)
    assert 0 <= x.min() and x.max() <= 1


def test_truncated_idx_is_refused(tmp_path):
    fake_idx_folder(tmp_path, gz=False)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ValueError, match="truncated"):
        data.load_mnist(source="full", folder=tmp_path)


def test_missing_mnist_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("VMONF_DATA", str(tmp_path))
    with pytest.raises(ValueError, match="download=True"):
        data.load_mnist(source="full")


@pytest.fixture
def http_folder(tmp_path):
    """A local HTTP server over a folder (loopback only)."""
    served = tmp_path / "served"
    served.mkdir()
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(SimpleHTTPRequestHandler, directory=str(served)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield served, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


def test_download_verifies_and_writes_atomically(tmp_path, http_folder, monkeypatch):
    served, url = http_folder
    fake_idx_folder(served)
    md5 = {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in served.iterdir()}
    source = data.IdxSource("fake", (url,), md5)
    monkeypatch.setenv("VMONF_DATA", str(tmp_path / "cache"))
    seen = []
    x, y, _ = data.load_idx_dataset(source, download=True, progress=lambda d, t: seen.append((d, t)))
    assert x.shape == (60, 784) and seen and seen[-1][0] == seen[-1][1] > 0
    # A second load uses the verified cache.
    x2, _, _ = data.load_idx_dataset(source)
    np.testing.assert_array_equal(x, x2)
    # A corrupt cache file is caught by its checksum before use.
    cached = tmp_path / "cache" / "fake" / "train-labels-idx1-ubyte.gz"
    cached.write_bytes(gzip.compress(b"\x00\x00\x08\x01\x00\x00\x00\x01\x07"))
    with pytest.raises(ValueError, match="checksum"):
        data.load_idx_dataset(source)


def test_bad_checksum_download_leaves_no_file(tmp_path, http_folder):
    served, url = http_folder
    (served / "f.gz").write_bytes(b"not what we expect")
    dest = tmp_path / "out" / "f.gz"
    with pytest.raises(ValueError, match="Checksum mismatch"):
        data.download_file(url + "f.gz", dest, "0" * 32)
    assert not dest.exists() and list(dest.parent.iterdir()) == []


def test_embedded_mnist_and_digits():
    x, y, shape = data.load_mnist()
    assert x.shape == (5000, 784) and shape == (28, 28) and np.bincount(y).tolist() == [500] * 10
    xd, yd, sd = data.load_digits()
    assert xd.shape == (1797, 64) and sd == (8, 8) and xd.max() <= 1


@pytest.mark.parametrize("logit, pca", [(False, 10), (True, 10), (True, None)])
def test_preprocessor_inverts(logit, pca):
    x, _, _ = data.load_digits()
    prep = data.ImagePreprocessor(pca, logit=logit, levels=0)
    f = prep.fit_transform(x)
    back = prep.inverse_transform(f)
    assert back.shape == x.shape
    if pca is None:
        np.testing.assert_allclose(back, x, atol=1e-5)
    else:  # PCA keeps most of the image: reconstruction beats the mean image by far
        assert np.abs(back - x).mean() < 0.5 * np.abs(x - x.mean(0)).mean()
        np.testing.assert_allclose(f.std(0), 1.0, rtol=0.05)  # whitened


def test_cli_train_writes_checkpoint_and_metrics(tmp_path, capsys):
    assert main(["train", "--dataset", "gaussian mixture", "--components", "4", "--depth", "2", "--hidden", "16",
                 "--steps", "60", "--samples", "400", "--out", str(tmp_path)]) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert {"ari", "nmi", "accuracy"} <= set(metrics["clustering"]) and "heldout_loglik" in metrics
    from vmonf import VMoNF

    est = VMoNF.load(tmp_path / "model.pt")
    assert est.predict(np.zeros((2, 2))).shape == (2,)
    assert "done in" in capsys.readouterr().out


def test_cli_restarts_keep_the_best_fit_and_its_recording(tmp_path, capsys):
    assert main(["train", "--dataset", "gaussian mixture", "--components", "3", "--depth", "1", "--hidden", "8",
                 "--steps", "300", "--samples", "300", "--n-init", "2", "--init", "gmm", "--out", str(tmp_path)]) == 0
    assert "fit 2/2" in capsys.readouterr().out
    from vmonf.studio.runfile import load_run

    steps = [f.meta["step"] for f in load_run(tmp_path / "run.vmonf").frames]
    assert len(steps) >= 2 and steps == sorted(set(steps))  # one fit's frames, not two fits interleaved


@pytest.mark.parametrize("consistency", ["5", "0"])
def test_cli_perturbs_images_by_shifting_them(tmp_path, monkeypatch, consistency):
    """On image data the CLI's consistency term gets shifted and rotated copies (what helped on MNIST)."""
    import vmonf.__main__ as cli

    seen = []
    monkeypatch.setattr(cli.VMoNF, "fit", lambda self, X, y=None, **kw: seen.append(kw.get("X_perturbed")) or 1 / 0)
    with pytest.raises(ZeroDivisionError):
        cli.train(cli.build_parser().parse_args(["train", "--dataset", "digits", "--consistency", consistency,
                                                 "--steps", "1", "--out", str(tmp_path)]))
    copies = seen[0]
    if consistency == "0":
        assert copies is None
    else:
        assert copies.shape[0] == 4 and copies.shape[1:] == (1797, 16)


SMALL_RUN = ["--components", "3", "--depth", "1", "--hidden", "8", "--samples", "300"]


@pytest.mark.parametrize(("every", "expected"), [(None, 101), ("10", 41), ("3", 134)])
def test_cli_records_from_the_start_and_as_often_as_asked(tmp_path, every, expected):
    """The recording starts at step 0 (the start itself, before the candidate starts are even scored) and
    honours --record-every for any N >= 1, below the evaluation interval too: about 100 frames by default,
    41 for every 10 of 400 steps."""
    from vmonf.studio.runfile import load_run

    args = ["train", *SMALL_RUN, "--steps", "400", "--out", str(tmp_path)]
    args += ["--record-every", every] if every else []
    assert main(args) == 0
    steps = [f.meta["step"] for f in load_run(tmp_path / "run.vmonf").frames]
    assert steps[0] == 0 and steps == sorted(set(steps))
    assert abs(len(steps) - expected) <= 2 and steps[-1] >= 390


def test_cli_export_into_a_folder_and_bad_paths(tmp_path, capsys):
    assert main(["train", *SMALL_RUN, "--steps", "60", "--record-every", "20", "--out", str(tmp_path / "r")]) == 0
    run = str(tmp_path / "r" / "run.vmonf")
    assert main(["export", run, "--format", "html", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "run.html").stat().st_size > 1000  # a folder gets run.<format>
    capsys.readouterr()
    for bad in (["export", run, "--format", "html", "--out", str(tmp_path / "no" / "such" / "x.html")],
                ["export", str(tmp_path / "missing.vmonf"), "--out", str(tmp_path)],
                ["train", *SMALL_RUN, "--steps", "1", "--out", run]):  # --out names a file, not a folder
        assert main(bad) == 2
        err = capsys.readouterr().err
        assert err.startswith("error:") and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_cli_user_error_is_a_message(tmp_path, capsys):
    assert main(["train", "--components", "0", "--steps", "1", "--out", str(tmp_path)]) == 2
    assert "error:" in capsys.readouterr().err


def _csv(rows: list[str]) -> bytes:
    return ("\n".join(rows) + "\n").encode()


GOOD = [f"{i * 0.1},{(i % 7) * 0.3}" for i in range(30)]


def test_csv_points_parse_with_header_and_labels():
    x, y = uploads.parse_points_csv(_csv(["x,y"] + GOOD))
    assert x.shape == (30, 2) and y is None
    x, y = uploads.parse_points_csv(_csv([f"{r},{i % 3}" for i, r in enumerate(GOOD)]))
    assert y.tolist()[:4] == [0, 1, 2, 0]


@pytest.mark.parametrize("blob, match", [
    (b"", "empty"),
    (b"\xff\xfe\x00garbage", "not a text CSV"),
    (_csv(GOOD[:3]), "at least 10"),
    (_csv([r.split(",")[0] for r in GOOD]), "Expected 2 columns"),
    (_csv(GOOD + ["1,2,3,4"]), "Row 31 has 4 columns"),
    (_csv(GOOD[:5] + ["1,hello"] + GOOD[5:]), "Row 6, column 2: 'hello' is not a number"),
    (_csv(GOOD + ["nan,1"]), "NaN or infinity"),
    (_csv(GOOD + ["inf,1"]), "NaN or infinity"),
    (_csv([f"{r},0.5" for r in GOOD]), "whole-number labels"),
    (_csv(["1,2"] * 20_001), "at most 20,000"),
    (b"1,2\n" * 2_000_000, "limit is 5 MB"),
])
def test_bad_csvs_get_their_messages(blob, match):
    with pytest.raises(ValueError, match=match):
        uploads.parse_points_csv(blob)


def test_cli_trains_with_the_papers_recipe(tmp_path, capsys):
    assert main(["train", "--dataset", "gaussian mixture", "--components", "3", "--hidden", "8", "--steps", "40",
                 "--samples", "300", "--recipe", "paper", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "the paper's recipe (depth 8, init random, temperature decay 0.001, consistency 0)" in out
    assert json.loads((tmp_path / "metrics.json").read_text())["init"] == "random"
