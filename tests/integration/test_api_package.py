"""`pip install <repository>` gives `import dany`: build the wheel, install it in a fresh
virtualenv, import it there. No lab needed.

The wheel is built from a scratch copy of the files pyproject.toml packages (so that the
build leaves no build/ or dany.egg-info in the shared working tree); the test then checks
that the wheel's modules are byte for byte the collection's plugins/module_utils.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import psycopg2
import pytest

REPO = Path(__file__).resolve().parents[2]
CORE = REPO / "plugins" / "module_utils"


def run(cmd, **kwargs):
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=300, check=False,
                          **kwargs)
    assert proc.returncode == 0, "%s failed:\n%s\n%s" % (cmd, proc.stdout[-4000:], proc.stderr[-4000:])
    return proc


def can_build_offline():
    import importlib.util
    try:
        import setuptools
    except ImportError:
        return False
    # setuptools < 70 needs the wheel package for bdist_wheel.
    return int(setuptools.__version__.split(".")[0]) >= 61 and \
        importlib.util.find_spec("wheel") is not None


@pytest.fixture(scope="module")
def wheel_file(tmp_path_factory):
    src = tmp_path_factory.mktemp("build") / "src"
    src.mkdir()
    for name in ("pyproject.toml", "LICENSE"):
        shutil.copy2(REPO / name, src / name)
    (src / "docs").mkdir()
    shutil.copy2(REPO / "docs" / "python-api.md", src / "docs" / "python-api.md")
    shutil.copytree(CORE, src / "plugins" / "module_utils",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = src.parent / "wheel"
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--disable-pip-version-check",
           "-w", out, src]
    if can_build_offline():
        cmd.insert(4, "--no-build-isolation")
    run(cmd, cwd=src)
    wheels = list(out.glob("dany-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


@pytest.fixture(scope="module")
def wheel_source(wheel_file):
    """The snapshot of plugins/module_utils the wheel was built from."""
    return wheel_file.parent.parent / "src" / "plugins" / "module_utils"


def test_wheel_holds_the_core_files_unchanged(wheel_file, wheel_source):
    # Compared with the snapshot the wheel was built from: other work in this tree may
    # change a file of the core while the test runs.
    with zipfile.ZipFile(wheel_file) as archive:
        names = archive.namelist()
        modules = sorted(n for n in names if n.startswith("dany/"))
        expected = sorted("dany/" + p.name for p in CORE.glob("*.py"))
        assert modules == expected
        for name in modules:
            assert archive.read(name) == (wheel_source / name.split("/", 1)[1]).read_bytes(), name
        metadata = archive.read(next(n for n in names if n.endswith(".dist-info/METADATA")))
    metadata = metadata.decode("utf-8")
    assert "Requires-Python: >=3.9" in metadata
    requires = [line for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    assert [r for r in requires if "extra ==" not in r] == ["Requires-Dist: psycopg2>=2.8"]
    assert any("alembic" in r and 'extra == "alembic"' in r for r in requires)


def test_wheel_installs_and_imports_in_a_fresh_venv(wheel_file, tmp_path):
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", venv])
    python = venv / "bin" / "python"
    run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index",
         "--disable-pip-version-check", wheel_file])
    # psycopg2 (the only runtime dependency) from this interpreter, and nothing else of it:
    # a directory with just psycopg2 and its bundled libraries, on the venv's path.
    site = Path(run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"])
                .stdout.strip())
    only = tmp_path / "psycopg2-only"
    only.mkdir()
    found = Path(psycopg2.__file__).parent.parent
    for entry in found.iterdir():
        if entry.name == "psycopg2" or entry.name.startswith("psycopg2_binary.libs"):
            os.symlink(entry, only / entry.name)
    (site / "psycopg2-only.pth").write_text(str(only) + "\n")
    script = textwrap.dedent("""
        import os, sys
        import dany, dany.api, dany.alembic_ops, dany.tables
        from dany.api import Cluster
        assert os.path.dirname(dany.__file__).startswith(sys.prefix), dany.__file__
        assert "ansible" not in sys.modules and "ansible_collections" not in sys.modules
        cluster = Cluster("shop", {1: "host=db1 dbname=shop user=slony password=s3cret",
                                   2: "host=db2 dbname=shop user=slony"})
        assert cluster.node_ids == [1, 2]
        assert [p["server"] for p in cluster.mesh_paths()] == [1, 2]
        try:
            dany.alembic_ops.require_alembic()
        except Exception as exc:
            assert "pip install 'dany[alembic]'" in str(exc), exc
        else:
            raise AssertionError("alembic is not installed in this venv")
        print("ok", dany.api.__version__)
    """)
    proc = run([python, "-c", script], cwd=tmp_path, env={"PATH": os.environ.get("PATH", "")})
    assert proc.stdout.strip() == "ok 0.1.0"


def test_versions_agree():
    import re
    galaxy = re.search(r"^version:\s*(\S+)", (REPO / "galaxy.yml").read_text(), re.M).group(1)
    pyproject = re.search(r'^version\s*=\s*"([^"]+)"', (REPO / "pyproject.toml").read_text(),
                          re.M).group(1)
    api = re.search(r'^__version__ = "([^"]+)"', (CORE / "api.py").read_text(), re.M).group(1)
    assert galaxy == pyproject == api
