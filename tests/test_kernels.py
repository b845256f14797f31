"""`rnnlab kernel install|list`: the rnnlab-cuda kernelspec, and a notebook run under it."""

from __future__ import annotations

import json
import sys

import nbformat
import pytest
import torch

from rnnlab.cli import main
from rnnlab.kernels import CUDA_KERNEL, install_cuda_kernel, list_kernels


@pytest.fixture
def prefix(tmp_path, monkeypatch):
    """A throw-away install prefix that Jupyter searches (and nothing of the user's)."""
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "share" / "jupyter"))
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "data"))
    return tmp_path


def test_install_writes_a_kernelspec_of_this_python_that_sets_rnnlab_device(prefix):
    path = install_cuda_kernel(prefix=prefix)
    assert path == prefix / "share" / "jupyter" / "kernels" / CUDA_KERNEL
    spec = json.loads((path / "kernel.json").read_text())
    assert spec["env"] == {"RNNLAB_DEVICE": "cuda"}
    assert spec["argv"][0] == sys.executable and "ipykernel_launcher" in spec["argv"]
    found = {k["name"]: k for k in list_kernels()}
    assert found[CUDA_KERNEL]["device"] == "cuda"
    assert found[CUDA_KERNEL]["path"] == str(path)


def test_install_refuses_two_locations(prefix):
    with pytest.raises(ValueError, match="location: expected at most one of"):
        install_cuda_kernel(user=True, prefix=prefix)
    with pytest.raises(TypeError, match="^user: expected a bool, got str$"):
        install_cuda_kernel(user="yes")
    with pytest.raises(TypeError, match="^prefix: expected a str, a pathlib.Path or None"):
        install_cuda_kernel(prefix=3)


def test_cli_installs_and_lists_the_kernel(prefix, capsys):
    assert main(["kernel", "install", "--prefix", str(prefix)]) == 0
    assert CUDA_KERNEL in capsys.readouterr().out
    assert main(["kernel", "list"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert [CUDA_KERNEL, "cuda"] == rows[[r[0] for r in rows].index(CUDA_KERNEL)][:2]
    with pytest.raises(SystemExit):
        main(["kernel", "install", "--user", "--sys-prefix"])


@pytest.mark.slow
def test_a_notebook_under_the_kernel_computes_on_what_rnnlab_device_says(prefix):
    from nbclient import NotebookClient

    install_cuda_kernel(prefix=prefix)
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "import os, rnnlab\n"
        "print(os.environ.get('RNNLAB_DEVICE'))\n"
        "try:\n"
        "    print(rnnlab.default_device())\n"
        "except RuntimeError as error:\n"
        "    print('RuntimeError', error)")])
    NotebookClient(notebook, kernel_name=CUDA_KERNEL, timeout=120).execute()
    # the two lines may arrive as separate stream outputs (rnnlab imports torch lazily,
    # between the two prints), so read the cell's whole stdout
    stdout = "".join(o.text for o in notebook.cells[0].outputs if o.get("name") == "stdout")
    variable, device = stdout.splitlines()[:2]
    assert variable == "cuda"
    if torch.cuda.is_available():
        assert device == "cuda"
    else:   # no GPU here: default_device() follows the variable and says why it cannot
        assert device.startswith("RuntimeError") and "RNNLAB_DEVICE" in device
