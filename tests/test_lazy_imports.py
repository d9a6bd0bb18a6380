"""A text run imports only what it uses: `import prompt_bench.run`, and a text run's path up to the
built experiment, in a clean interpreter, never import wandb, torchvision, datasets (nor, at import,
peft, sklearn, pandas); and no prompt_bench module is the one that imports matplotlib, PIL, pandas or
peft (pytorch_lightning imports matplotlib, PIL and scipy through torchmetrics; transformers'
optimization module, where Adafactor lives, imports peft when it is installed: theirs, not ours)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Records, for each watched top-level package, the module whose code first imported it.
SCRIPT = r"""
import json, sys

WATCHED = ("wandb", "torchvision", "datasets", "matplotlib", "peft", "pandas", "PIL", "sklearn")
importers = {}


class WhoImports:
    def find_spec(self, name, path=None, target=None):
        if name in WATCHED and name not in importers:
            frame = sys._getframe(1)
            while frame is not None and frame.f_code.co_filename.startswith(("<frozen", "<string>")):
                frame = frame.f_back
            importers[name] = frame.f_globals.get("__name__", "?") if frame is not None else "?"
        return None


sys.meta_path.insert(0, WhoImports())
import prompt_bench.run

at_import = sorted(name for name in WATCHED if name in sys.modules)
from hydra import compose, initialize_config_dir
from omegaconf import open_dict

from prompt_bench.build import build_experiment

with initialize_config_dir(config_dir=sys.argv[1], version_base="1.3"):
    cfg = compose(config_name="config", overrides=["backbone=tiny_bert", "dataset=synthetic"])
with open_dict(cfg):
    cfg.paths.output_dir = cfg.paths.cache_dir = sys.argv[2]
build_experiment(cfg).datamodule.setup("fit")
at_build = sorted(name for name in WATCHED if name in sys.modules)
print(json.dumps({"at_import": at_import, "at_build": at_build, "importers": importers}))
"""


def test_a_text_run_does_not_import_what_it_does_not_use(tmp_path):
    completed = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(ROOT / "conf"), str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HOME": str(tmp_path), "OMP_NUM_THREADS": "1"},
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    found = json.loads(completed.stdout.strip().splitlines()[-1])
    assert not {"wandb", "torchvision", "datasets", "peft", "sklearn", "pandas"} & set(found["at_import"]), found
    assert not {"wandb", "torchvision", "datasets"} & set(found["at_build"]), found
    assert set(found["importers"]) >= set(found["at_build"])  # the hook saw every watched import
    ours = {name: module for name, module in found["importers"].items() if module.startswith("prompt_bench")}
    assert not ours, found["importers"]
