"""The house's floors: the core library never loads the studio, the UI framework or the plotting side."""

import pkgutil
import subprocess
import sys
from pathlib import Path

import vmonf

ROOT = Path(__file__).resolve().parent.parent
#: What a core module may not pull in, directly or through another module.
FORBIDDEN = ("vmonf.studio", "streamlit", "plotly", "matplotlib", "PIL", "imageio_ffmpeg")


def core_modules() -> list[str]:
    names = ["vmonf"]
    for info in pkgutil.walk_packages(vmonf.__path__, "vmonf."):
        if not info.name.startswith("vmonf.studio") and info.name != "vmonf.__main__":  # __main__: the CLI, a front end
            names.append(info.name)
    return names


def test_core_modules_import_nothing_from_the_studio_or_plotting_side():
    names = core_modules()
    assert {"vmonf.model", "vmonf.train", "vmonf.starts", "vmonf.estimator", "vmonf.data.toys"} <= set(names)
    code = ("import sys, importlib\n"
            f"for name in {names!r}: importlib.import_module(name)\n"
            "import vmonf\n"
            "for name in vmonf.__all__: getattr(vmonf, name)\n"
            f"print([m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r} or m.startswith('vmonf.studio')])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_the_studio_never_imports_streamlit():
    names = [info.name for info in pkgutil.walk_packages([str(ROOT / "vmonf" / "studio")], "vmonf.studio.")]
    code = ("import sys, importlib\n"
            f"for name in {names!r}: importlib.import_module(name)\n"
            "print([m for m in sys.modules if m.split('.')[0] == 'streamlit'])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_a_trainer_leaves_the_process_settings_alone():
    """Constructing and stepping a Trainer neither tunes the allocator nor leaves denormals flushed; the worker's
    tune_process() does both."""
    code = """
import torch
from vmonf import perf
from vmonf.model import ModelConfig, VMoNFModel
from vmonf.train import Trainer
torch.set_flush_denormal(False)
x = torch.randn(64, 2)
Trainer(VMoNFModel(ModelConfig(2, 2, depth=1, hidden=8)), x).run(3)
tiny = torch.tensor([1e-39]) * 1.5  # a denormal: flushed to zero only while flushing is on
print(perf._ALLOCATOR_TUNED, bool(tiny.item() != 0))
perf.tune_process()
no_mallopt = not hasattr(__import__("ctypes").CDLL(None), "mallopt")
print(perf._ALLOCATOR_TUNED or no_mallopt, (torch.tensor([1e-39]) * 1.5).item() == 0)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.split() == ["False", "True", "True", "True"], out.stdout + out.stderr
