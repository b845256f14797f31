"""Between two labs of a student, :func:`rnnlab.grading.remote.reset` gives the next lab what a
fresh kernel would have, and freezes what survives so that later resets stay cheap."""

from __future__ import annotations

import json
import subprocess
import sys

_PROGRAM = r"""
import gc, json, os, tempfile, weakref
import torch
from IPython.core.interactiveshell import InteractiveShell
from rnnlab.grading import remote

shell = InteractiveShell.instance()
shell.run_cell("secret = 42")
torch.set_default_dtype(torch.float64)
torch.use_deterministic_algorithms(True, warn_only=True)
torch.set_grad_enabled(False)
os.chdir(tempfile.mkdtemp())
os.environ["HOME"] = tempfile.gettempdir()
remote.reset(shell)
after_first = {"namespace_has_secret": "secret" in shell.user_ns,
               "dtype": str(torch.get_default_dtype()),
               "deterministic": torch.are_deterministic_algorithms_enabled(),
               "warn_only": torch.is_deterministic_algorithms_warn_only_enabled(),
               "grad": torch.is_grad_enabled(),
               "cwd_is_home": os.getcwd() == os.path.realpath(os.environ["HOME"]),
               "frozen": gc.get_freeze_count()}

class Node:
    pass

cycle = Node(); cycle.self = cycle; alive = weakref.ref(cycle); del cycle
remote.reset(shell)
after_first["lab_garbage_collected"] = alive() is None
print(json.dumps(after_first))
"""


def test_reset_restores_a_fresh_kernels_state_and_still_collects_a_labs_garbage(tmp_path):
    out = subprocess.run([sys.executable, "-c", _PROGRAM], capture_output=True, text=True,
                         check=True, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
                                          "IPYTHONDIR": str(tmp_path / "ipython")}).stdout
    state = json.loads(out.strip().splitlines()[-1])
    assert state == {"namespace_has_secret": False, "dtype": "torch.float32",
                     "deterministic": False, "warn_only": False, "grad": True,
                     "cwd_is_home": True, "frozen": state["frozen"],
                     "lab_garbage_collected": True}
    assert state["frozen"] > 1000          # the modules survive the reset, frozen
