"""Execute the tutorial notebooks end to end with the small budget (`JAXRL_NOTEBOOK_SMALL=1`).

The same check as `JAXRL_NOTEBOOK_SMALL=1 pytest --nbmake notebooks/`, done with nbclient
directly so it runs with the default suite. The notebooks assert on their own results
(metric shapes, finite losses, one trace for the whole sweep); this test adds that the plot
cells, found by their cell tags, drew a figure.
"""

import os
import sys

import pytest

nbclient = pytest.importorskip("nbclient")
nbformat = pytest.importorskip("nbformat")

NOTEBOOKS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                         "notebooks")


def _execute(path: str, tmp_path) -> "nbformat.NotebookNode":
    nb = nbformat.read(path, as_version=4)
    # The "python3" kernel spec's argv starts with plain `python`, which jupyter_client
    # replaces with `sys.executable`, so the kernel runs in the interpreter running pytest.
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    return nb


def _tagged(nb, tag: str):
    cells = [c for c in nb.cells if tag in c.get("metadata", {}).get("tags", [])]
    assert len(cells) == 1, f"expected one cell tagged {tag!r}, found {len(cells)}"
    return cells[0]


def _has_image(cell) -> bool:
    return any("image/png" in out.get("data", {}) for out in cell.get("outputs", []))


def _run_small(name: str, tmp_path, monkeypatch) -> tuple["nbformat.NotebookNode", str]:
    """Execute `notebooks/name` with the small budget; fail on any error output.

    Returns:
      `(notebook, all its text outputs joined)`.
    """
    # The kernel subprocess inherits this environment.
    monkeypatch.setenv("JAXRL_NOTEBOOK_SMALL", "1")
    monkeypatch.setenv("JAX_NUMPY_RANK_PROMOTION", "raise")  # as conftest.py sets for the suite
    monkeypatch.delenv("MPLBACKEND", raising=False)  # a non-inline backend would draw nothing
    nb = _execute(os.path.join(NOTEBOOKS, name), tmp_path)
    errors = [out for cell in nb.cells for out in cell.get("outputs", [])
              if out.get("output_type") == "error"]
    assert not errors, errors
    text = "".join(out.get("text", "") for cell in nb.cells for out in cell.get("outputs", []))
    return nb, text


def test_ppo_cartpole_notebook_runs(tmp_path, monkeypatch):
    nb, text = _run_small("ppo_cartpole.ipynb", tmp_path, monkeypatch)
    setup_text = "".join(out.get("text", "") for out in nb.cells[1].get("outputs", []))
    assert "SMALL=True" in setup_text, setup_text
    assert _has_image(_tagged(nb, "plot-seeds")), "the seed learning-curve cell drew nothing"
    assert _has_image(_tagged(nb, "plot-sweep")), "the sweep learning-curve cell drew nothing"


def test_notebook_kernel_is_this_interpreter():
    """The "python3" kernel must resolve to the interpreter (venv) that runs the tests."""
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    spec = KernelSpecManager().get_kernel_spec("python3")
    manager = KernelManager(kernel_name="python3")
    cmd = manager.format_kernel_cmd()
    assert cmd[0] == sys.executable or os.path.samefile(cmd[0], sys.executable), (
        spec.resource_dir, cmd)


def test_quickstart_notebook_runs(tmp_path, monkeypatch):
    nb, text = _run_small("quickstart.ipynb", tmp_path, monkeypatch)
    assert "SMALL=True" in text and "restored checkpoint of iteration" in text, text
    assert _has_image(_tagged(nb, "plot-curves")), "the learning-curve cell drew nothing"


@pytest.mark.slow  # the default suite's time budget; `make test-slow` runs it
def test_lifelong_notebook_runs(tmp_path, monkeypatch):
    nb, text = _run_small("lifelong.ipynb", tmp_path, monkeypatch)
    assert "SMALL=True" in text and "greedy actions unchanged: True" in text, text
    assert "order search:" in text, text
    assert _has_image(_tagged(nb, "plot-matrix")), "the transfer-matrix cell drew nothing"


@pytest.mark.slow  # the default suite's time budget; `make test-slow` runs it
def test_imitation_notebook_runs(tmp_path, monkeypatch):
    nb, text = _run_small("imitation.ipynb", tmp_path, monkeypatch)
    assert "SMALL=True" in text and "DAgger greedy return" in text, text
    assert _has_image(_tagged(nb, "plot-imitation")), "the comparison plot drew nothing"
