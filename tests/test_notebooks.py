"""Every notebook under colab/ runs headless, top to bottom, with `small = True`
and one CPU device (as a user's kernel has); any error fails its test."""
import pathlib

import nbformat
import pytest
from nbclient import NotebookClient

COLAB = pathlib.Path(__file__).parent.parent / "colab"
NOTEBOOKS = sorted(COLAB.glob("*.ipynb"))


def test_the_four_notebooks_are_there():
  assert [p.stem for p in NOTEBOOKS] == ["grassmann_heads", "hyperbolic_geometry", "pvt_retinanet",
                                         "quick_tour"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_stored_clean_with_colab_install_and_small_flag(path):
  nb = nbformat.read(path, as_version=4)
  nbformat.validate(nb)
  code = [c for c in nb.cells if c.cell_type == "code"]
  assert all(not c.outputs and c.execution_count is None for c in code), "outputs stored"
  assert "google.colab" in code[0].source and "pip install" in code[0].source
  params = [c for c in code if "parameters" in c.metadata.get("tags", [])]
  assert len(params) == 1 and params[0].source.startswith("small = False")


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path, tmp_path, monkeypatch):
  nb = nbformat.read(path, as_version=4)
  params = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
  params.source = params.source.replace("small = False", "small = True", 1)
  monkeypatch.setenv("XLA_FLAGS", "")  # One CPU device, not the tests' eight.

  client = NotebookClient(nb, timeout=900, kernel_name="python3",
                          resources={"metadata": {"path": str(COLAB)}})
  try:
    client.execute()
  finally:  # The executed notebook, outputs and all, for a look after a failure.
    nbformat.write(nb, tmp_path / path.name)
