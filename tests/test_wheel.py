"""The built wheel: what it contains, its metadata, and that it works installed on its own.

The repository keeps `agents/` and `envs/` at the top level but they must install as
`jaxrl.agents` and `jaxrl.envs`. We build the wheel from a copy of the checkout (so no
`build/` folder lands in the working tree), install it with `--no-deps --no-index` into a
fresh venv that borrows the dev venv's third-party packages through a `.pth` file, and use
it from a folder outside the checkout.
"""

import configparser
import email.parser
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _missing_tools() -> list[str]:
    return [name for name in ("build", "venv", "ensurepip")
            if importlib.util.find_spec(name) is None]


pytestmark = pytest.mark.skipif(
    bool(_missing_tools()),
    reason=f"needs the Python modules {', '.join(_missing_tools())} "
           "(install the `test` extra: pip install -e '.[test]')")


def _clean_env() -> dict[str, str]:
    """The environment minus anything that would put the checkout or the dev venv on the path."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV",
                        "PYTHONSAFEPATH")}
    env["PYTHONNOUSERSITE"] = "1"
    return env


def _run(cmd, *, cwd, env=None, timeout=300):
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, (
        f"{' '.join(map(str, cmd))} exited {proc.returncode}\n--- stdout\n{proc.stdout[-4000:]}"
        f"\n--- stderr\n{proc.stderr[-4000:]}")
    return proc


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """Build the wheel once, from a copy of the checkout, without build isolation."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    shutil.copytree(ROOT, src, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", ".venv", "venv", "build", "dist", "runs", "*.egg-info", "__pycache__",
        ".hypothesis", ".pytest_cache", ".ipynb_checkpoints", ".whl", "notebooks", "bench",
        "tests"))
    # The build backend (setuptools >= 68 and wheel, per [build-system]) must come from the
    # dev environment: `build` checks it and says what is missing if it is not there.
    _run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir",
          tmp / "dist", src], cwd=tmp)
    wheels = sorted((tmp / "dist").glob("jaxrl-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def _dist_info(names: list[str]) -> str:
    dirs = {n.split("/")[0] for n in names if n.split("/")[0].endswith(".dist-info")}
    assert len(dirs) == 1, dirs
    return dirs.pop()


def test_wheel_ships_the_package_under_jaxrl_only(wheel):
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        dist_info = _dist_info(names)
        top_level = zf.read(f"{dist_info}/top_level.txt").decode().split()
    for required in ("jaxrl/__init__.py", "jaxrl/agents/__init__.py", "jaxrl/agents/ppo.py",
                     "jaxrl/envs/__init__.py", "jaxrl/envs/registry.py",
                     "jaxrl/envs/wrappers.py", "jaxrl/envs/probes.py", "jaxrl/cli.py"):
        assert required in names, required
    assert not [n for n in names if n.startswith(("agents/", "envs/", "tests/"))], names
    assert {n.split("/")[0] for n in names} == {"jaxrl", dist_info}
    assert top_level == ["jaxrl"]
    # Every module of the three source folders is shipped, under its installed name.
    for folder, package in (("jaxrl", "jaxrl"), ("agents", "jaxrl/agents"),
                            ("envs", "jaxrl/envs")):
        for path in (ROOT / folder).glob("*.py"):
            assert f"{package}/{path.name}" in names, (folder, path.name)
    # The tuned settings ship as package data (`jaxrl train` reads them).
    for path in (ROOT / "jaxrl" / "data" / "tuned").glob("*.toml"):
        assert f"jaxrl/data/tuned/{path.name}" in names, path.name


def test_wheel_metadata(wheel):
    from packaging.requirements import Requirement
    from packaging.specifiers import SpecifierSet
    from packaging.version import Version

    with zipfile.ZipFile(wheel) as zf:
        dist_info = _dist_info(zf.namelist())
        metadata = email.parser.Parser().parsestr(zf.read(f"{dist_info}/METADATA").decode())
        entry_points = configparser.ConfigParser()
        entry_points.read_string(zf.read(f"{dist_info}/entry_points.txt").decode())

    assert metadata["Name"] == "jaxrl"
    requires_python = SpecifierSet(metadata["Requires-Python"])
    assert requires_python == SpecifierSet(">=3.11")
    assert Version("3.10") not in requires_python and Version("3.11") in requires_python

    jax_reqs = [Requirement(r) for r in metadata.get_all("Requires-Dist")
                if Requirement(r).name == "jax"]
    core = [r for r in jax_reqs if r.marker is None]
    assert len(core) == 1, jax_reqs
    for req in jax_reqs:  # the core requirement and any extra (cuda) alike
        assert any(s.operator == "<" and Version(s.version) == Version("0.12")
                   for s in req.specifier), str(req)
        assert not req.specifier.contains("0.12.0", prereleases=True), str(req)
        assert req.specifier.contains("0.10.2"), str(req)

    assert entry_points["console_scripts"]["jaxrl"].replace(" ", "") == "jaxrl.cli:main"


def _purelib(python: Path, cwd: Path) -> str:
    proc = _run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                cwd=cwd, env=_clean_env())
    return proc.stdout.strip()


CHECK_SCRIPT = r"""
import importlib, json, sys
import jaxrl, jaxrl.agents.ppo, jaxrl.envs
env, params = jaxrl.envs.make("CartPole-v1")
config, hparams = jaxrl.agents.ppo.AGENT.settings("Pendulum-v1")  # reads the shipped TOML
bare = {}
for name in ("agents", "envs"):
    try:
        importlib.import_module(name)
        bare[name] = "imported"
    except ModuleNotFoundError as e:
        bare[name] = "ModuleNotFoundError"
print(json.dumps({
    "jaxrl": jaxrl.__file__, "ppo": jaxrl.agents.ppo.__file__, "envs": jaxrl.envs.__file__,
    "env": type(env).__name__, "max_steps": int(params.max_steps_in_episode), "bare": bare,
    "editable_finder": any("editable" in type(f).__module__ for f in sys.meta_path),
    "tuned_num_envs": config.num_envs,
}))
"""


def test_installed_wheel_works_outside_the_checkout(wheel, tmp_path):
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", venv], cwd=tmp_path, env=_clean_env())
    python = venv / "bin" / "python"
    _run([python, "-m", "pip", "install", "--no-deps", "--no-index",
          "--disable-pip-version-check", "--quiet", wheel], cwd=tmp_path, env=_clean_env())

    # Borrow the dev venv's third-party packages (jax, gymnax, ...). Only this .pth is
    # processed: the dev venv's own .pth files (its editable jaxrl) are not, as checked below.
    fresh_site = Path(_purelib(python, tmp_path))
    dev_paths = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    (fresh_site / "zz-dev-venv.pth").write_text("".join(f"{p}\n" for p in dev_paths))

    work = tmp_path / "elsewhere"  # outside the checkout, so no stray `agents/` is importable
    work.mkdir()
    proc = _run([python, "-c", CHECK_SCRIPT], cwd=work, env=_clean_env())
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    for name in ("jaxrl", "ppo", "envs"):
        path = Path(info[name]).resolve()
        assert path.is_relative_to(fresh_site.resolve()), (name, path)
        assert not path.is_relative_to(ROOT), (name, path)
    assert info["editable_finder"] is False
    assert info["tuned_num_envs"] == 16
    assert info["env"] == "CartPole" and info["max_steps"] == 500
    assert info["bare"] == {"agents": "ModuleNotFoundError", "envs": "ModuleNotFoundError"}

    proc = _run([venv / "bin" / "jaxrl", "list"], cwd=work, env=_clean_env())
    lines = [line.strip() for line in proc.stdout.splitlines()]
    assert "agents:" in lines and "environments:" in lines
    assert any(line.split()[:1] == ["ppo"] for line in lines)
    assert "CartPole-v1" in lines and "probe/constant-reward" in lines
    first_line = (venv / "bin" / "jaxrl").read_text().splitlines()[0]
    assert first_line.startswith("#!") and str(venv) in first_line
