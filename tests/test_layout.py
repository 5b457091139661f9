"""The README's layout table names every folder of the packages (and only paths that exist), and the files
rft reads at run time are installed with it (pyproject's package-data)."""

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _layout_paths() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    table = readme.split("## Layout", 1)[1].split("\n## ", 1)[0]
    return [p for row in table.splitlines() if row.startswith("| `") for p in re.findall(r"`([^`]+)`", row.split("|")[1])]


def test_layout_table_names_every_package_folder_and_nothing_that_is_not_there():
    named = _layout_paths()
    missing = [p for p in named if not (ROOT / p).exists()]
    assert missing == []
    folders = [f"{d.relative_to(ROOT)}/" for top in ("rft", "rewards") for d in sorted((ROOT / top).iterdir())
               if d.is_dir() and d.name != "__pycache__"] + ["rewards/"]
    assert [f for f in folders if f not in named and f.rstrip("/") not in named] == []


def test_files_read_at_run_time_are_package_data():
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["rft"]
    needed = [p.relative_to(ROOT / "rft") for folder in ("templates", "zero_configs") for p in (ROOT / "rft" / folder).iterdir()]
    needed.append(Path("demo.yaml"))
    assert [str(p) for p in needed if not any(p.match(pattern) for pattern in patterns)] == []
    from rft.recipe.schema import DistributedSection
    from rft.train.config import ZERO_CONFIGS, zero_config_path
    from rft.train.launch import accelerate_config

    assert ZERO_CONFIGS == ROOT / "rft" / "zero_configs" and zero_config_path(3, True).is_file()
    assert accelerate_config(DistributedSection(zero_stage=2)).is_file()
