import os
import subprocess
import sys
import tempfile
from pathlib import Path

if os.environ.get("PYTEST_XDIST_WORKER"):  # pytest -n N: N workers share the cores; one thread each (and each
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # run a test starts), or their threads fight over the cores

import pytest
from hypothesis import settings
from omegaconf import OmegaConf

# Property tests draw the same examples on every run (CI, a fresh clone): a failure reproduces. To explore
# new examples: HYPOTHESIS_PROFILE=explore pytest ...
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.register_profile("explore", derandomize=False, max_examples=500)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

ROOT = Path(__file__).resolve().parent.parent


# Derived data (prepared stores, synthetic sets, feature caches) goes to a folder of this test session, not
# to the user's ~/.cache/attnapps: every session starts as a fresh clone would; the CLI runs inherit it.
os.environ["ATTNAPPS_CACHE"] = tempfile.mkdtemp(prefix="attnapps-test-cache-")
# Hugging Face datasets (data.hf=): its cache in the session's folder too, and never the network
os.environ["HF_HOME"] = os.path.join(os.environ["ATTNAPPS_CACHE"], "huggingface")
os.environ["HF_DATASETS_OFFLINE"] = os.environ["HF_HUB_OFFLINE"] = "1"

from tests.tiny_runs import tiny_runs  # noqa: E402,F401  (a session fixture: tiny trained runs of the four tasks)


def run_cli(*args, module="attnapps.run", cwd=None, input=None, env_extra=None, timeout=300):
    """Run ``python -m module args`` as a user would, with the test-only dummy task registered.
    It runs in a fresh temporary folder, so runs without ``hydra.run.dir=`` leave nothing in the repo."""
    env = {**os.environ, "ATTNAPPS_TASKS": "tests.dummy_task", "PYTHONPATH": str(ROOT), "HYDRA_FULL_ERROR": "0",
           **(env_extra or {})}
    with tempfile.TemporaryDirectory(prefix="attnapps-cli-") as scratch:
        return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd or scratch, env=env, input=input,
                              capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def dummy_cfg():
    import tests.dummy_task as dummy

    def make(*dotlist):
        return OmegaConf.merge(OmegaConf.structured(dummy.DummyConfig), OmegaConf.from_dotlist(list(dotlist)))

    return make
