"""Shared fixtures: a tiny synthetic dataset, a tiny model trained by the real pipeline (for the training tests), a
controlled model whose answers a test chooses (testkit/controlled.py: every decision path), each made once per run
and shared read-only by the xdist workers (`made_once`); the case store of a test's own $CXR_HOME (`store`); the CLI
run as a user runs it (`run_cli`, `cli_env`); a PostgreSQL database per test on one server per worker; and the path
of the real training data (tests that need it skip with a message where it is absent)."""

from __future__ import annotations

import gc
import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SHARED_TRAIN = PROJECT_ROOT.parent / "shared" / "data" / "kermany-cxr-224" / "train"
SHIPPED_REGISTRY = PROJECT_ROOT / "assets" / "models"

TINY_CONFIG = {
    "name": "tiny",
    "data": {"image_size": 48, "val_fraction": 0.25, "split_seed": 0},
    "model": {"backbone": "cxrnet", "filters": [8, 16, 16], "dropout": 0.1},
    "augment": {"strength": 0.5},
    "train": {"epochs": 3, "batch_size": 16, "learning_rate": 3e-3, "lr_schedule": "constant"},
    "guards": {"appearance_epochs": 2, "appearance_min_steps": 20},  # a tiny run's guards: fitted, not good
}


def _tiny_raw(root: Path, **sections) -> dict:
    """TINY_CONFIG on the data at `root`, each of `sections` merged into its table (or replacing a top-level value)."""
    raw = {k: dict(v) if isinstance(v, dict) else v for k, v in TINY_CONFIG.items()}
    raw["data"]["root"] = str(root)
    for section, values in sections.items():
        if isinstance(values, dict):
            raw.setdefault(section, {}).update(values)
        else:
            raw[section] = values
    return raw


def tiny_config(root: Path, **sections):
    from cxr_core.config import config_from_dict

    return config_from_dict(_tiny_raw(root, **sections))


def tiny_config_file(path: Path, root: Path, **sections) -> Path:
    """tiny_config's settings as the TOML file a training command reads (`python -m train --config PATH`)."""
    raw = _tiny_raw(root, **sections)

    def value(v) -> str:
        return json.dumps(v) if isinstance(v, (str, list)) else repr(v)

    lines = [f"{k} = {value(v)}" for k, v in raw.items() if not isinstance(v, dict)]
    for section, values in raw.items():
        if isinstance(values, dict):
            lines += [f"[{section}]", *(f"{k} = {value(v)}" for k, v in values.items())]
    path.write_text("\n".join(lines) + "\n")
    return path


def shared_data_or_skip() -> Path:
    if not SHARED_TRAIN.is_dir():
        pytest.skip(f"real training data not found at {SHARED_TRAIN} (see README: 'Data')")
    return SHARED_TRAIN


def _is_user_setting(name: str) -> bool:
    """A deployment's CXR_* variable; the test suite's own knobs (CXR_BROWSER_*) stay."""
    return name.startswith("CXR_") and not name.startswith("CXR_BROWSER_")


# The user's own settings, as the shell passed them, are never seen by a test: removed here, for session fixtures
# and the subprocesses they start, and again around every test (`own_app_home`).
for _name in [k for k in os.environ if _is_user_setting(k)]:
    del os.environ[_name]


def pytest_collection_finish(session) -> None:
    """What collection imported (TensorFlow, Keras, Streamlit...) lives for the whole run: freeze it out of the garbage
    collector's walk. Every Streamlit script run of an AppTest collects every generation (twice); walking those
    libraries each time was about a third of the quick command's CPU time (`gc.callbacks` timing)."""
    gc.freeze()


@pytest.fixture(autouse=True)
def own_app_home(monkeypatch, tmp_path):
    """Every test gets its own $CXR_HOME (cases, saved evaluations...), never the user's, and no other CXR_*
    variable from the shell: a workstation's CXR_DATABASE_URL, CXR_REGISTRY or CXR_PACS_* must not reach a test,
    in process or in the subprocesses it starts. A test that needs one sets it itself."""
    for name in [k for k in os.environ if _is_user_setting(k)]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("CXR_HOME", str(tmp_path / "cxr_home"))
    return tmp_path / "cxr_home"


def made_once(tmp_path_factory, name: str, make) -> Path:
    """`make(folder)` run once per test run, whatever the number of pytest-xdist workers, and its folder shared by
    all of them (read-only): the first worker makes it under a file lock in the run's common temporary folder, the
    others wait and reuse it (pytest-xdist's documented pattern for session fixtures)."""
    import fcntl
    import shutil

    root = tmp_path_factory.getbasetemp()
    # A pytest-xdist worker's own folder is popen-gwN, and the run's folder is above it. Not PYTEST_XDIST_WORKER: a
    # pytest run started by a test inherits it, and above that run's folder is the folder of every run.
    if root.name.startswith("popen-gw"):
        root = root.parent
    folder, done = root / f"shared-{name}", root / f"shared-{name}.done"
    with open(root / f"shared-{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not done.exists():
                shutil.rmtree(folder, ignore_errors=True)  # what a failed attempt left
                make(folder)
                done.write_text("")
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return folder


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    from testkit.synthetic import write_kaggle_folder

    return made_once(tmp_path_factory, "tiny-data",
                     lambda d: write_kaggle_folder(d / "tiny", per_class=16, size=64, seed=0)) / "tiny"


@pytest.fixture(scope="session")
def site_data(tmp_path_factory) -> Path:
    """Another tiny labelled folder, none of whose films the tiny model was trained on: a "local" evaluation."""
    from testkit.synthetic import write_kaggle_folder

    return made_once(tmp_path_factory, "site-data",
                     lambda d: write_kaggle_folder(d / "site", per_class=16, size=64, seed=7)) / "site"


@pytest.fixture(scope="session")
def tiny_registry(tmp_path_factory, tiny_data):
    """A registry holding one tiny 3-class model, trained and registered by train.pipeline: once per test run,
    shared read-only by every worker (`made_once`)."""
    from cxr_core.model.registry import Registry

    def make(folder: Path) -> None:
        from train.pipeline import train

        result = train(tiny_config(tiny_data), runs_dir=folder / "runs", registry=Registry(folder / "registry"),
                       activate=True, command="pytest tiny", log=lambda s: None)
        assert result.model_id is not None

    return Registry(made_once(tmp_path_factory, "tiny-registry", make) / "registry")


@pytest.fixture(scope="session")
def tiny_model_dir(tiny_registry) -> Path:
    return tiny_registry.active().path


@pytest.fixture(scope="session")
def tiny_predictor(tiny_model_dir):
    from cxr_core.model.predict import Predictor

    return Predictor(tiny_model_dir)


@pytest.fixture
def store(own_app_home):
    """The case store of this test's own $CXR_HOME (SQLite), opened as the CLI and the pages open it."""
    from cxr_core.cases.store import CaseStore

    return CaseStore.open()


def cli_env(registry=None, **variables: str) -> dict[str, str]:
    """The environment for a CLI call or a started process: this process's, without the shell's CXR_* settings
    (`own_app_home` puts the test's own CXR_HOME back), TensorFlow quiet, CXR_REGISTRY from `registry` (a Registry
    or a folder) where given, and `variables`."""
    env = {k: v for k, v in os.environ.items() if not _is_user_setting(k) or k == "CXR_HOME"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    if registry is not None:
        env["CXR_REGISTRY"] = str(registry if isinstance(registry, (str, os.PathLike)) else registry.root)
    env.update(variables)
    return env


def run_cli(args: list[str], env: dict[str, str] | None = None, process: bool = False):
    """`python -m cxr_core ARGS` with `env` as its whole environment (default: `cli_env()`): its exit status, stdout
    and stderr as a CompletedProcess. In this process (`cxr_core.cli.main`, stdin empty and not a terminal, the
    environment restored afterwards), without a new interpreter and TensorFlow import each time; `process=True`
    starts the real command, as a user would."""
    import contextlib
    import io
    import subprocess
    import sys

    env = cli_env() if env is None else env
    if process:
        return subprocess.run([sys.executable, "-m", "cxr_core", *args], cwd=PROJECT_ROOT, env=env,
                              capture_output=True, text=True, timeout=300)
    from cxr_core.cli import main

    saved_env, saved_stdin = dict(os.environ), sys.stdin
    out, err = io.StringIO(), io.StringIO()
    try:
        os.environ.clear()
        os.environ.update(env)
        sys.stdin = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(list(args))
            except SystemExit as exc:  # argparse's usage errors
                code = exc.code if isinstance(exc.code, int) else 2
    finally:
        sys.stdin = saved_stdin
        os.environ.clear()
        os.environ.update(saved_env)
    return subprocess.CompletedProcess(["python", "-m", "cxr_core", *args], code, out.getvalue(), err.getvalue())


@pytest.fixture(scope="session")
def controlled_registry(tmp_path_factory):
    """A registry holding the controlled test model (testkit/controlled.py), active: a film's code sets its answer.
    Built once per test run and shared read-only by every worker (`made_once`)."""
    from cxr_core.model.registry import Registry

    from testkit.controlled import write_model_folder

    def make(folder: Path) -> None:
        registry = Registry(folder / "registry")
        registry.set_default(registry.register(write_model_folder(folder / "build" / "model")).model_id)

    return Registry(made_once(tmp_path_factory, "controlled-registry", make) / "registry")


@pytest.fixture(scope="session")
def controlled_model_dir(controlled_registry) -> Path:
    return controlled_registry.active().path


@pytest.fixture(scope="session")
def controlled_predictor(controlled_model_dir):
    """Shared by the session: nothing may change it (an operating point is passed per call)."""
    from cxr_core.model.predict import Predictor

    return Predictor(controlled_model_dir)


@pytest.fixture(scope="session")
def postgres_server():
    """One throwaway PostgreSQL server on loopback per worker (testkit/harness.py), for the session; or, where it
    cannot run, why (a PostgresUnavailable)."""
    from testkit.harness import PostgresUnavailable
    from testkit.harness import postgres_server as start

    server = start()
    try:
        url = server.__enter__()
    except PostgresUnavailable as exc:
        yield exc
        return
    try:
        yield url
    finally:
        server.__exit__(None, None, None)


@pytest.fixture
def postgres_url(postgres_server):
    """A database of its own for this test, on the session's PostgreSQL server; skips, saying why, where PostgreSQL
    cannot run."""
    import uuid

    from sqlalchemy import create_engine, text

    if isinstance(postgres_server, Exception):
        pytest.skip(f"{postgres_server}; the SQLite tests still ran")
    name = f"test_{uuid.uuid4().hex[:16]}"
    engine = create_engine(postgres_server, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(f"CREATE DATABASE {name}"))
    engine.dispose()
    yield postgres_server.rsplit("/", 1)[0] + f"/{name}"


# What `-m "not slow"` leaves out (pytest.ini): whole modules that drive real servers or processes or train models,
# any test that starts PostgreSQL or Orthanc, and the tests marked slow by hand (a real process killed, a training
# run from the app). The README's test command runs everything.
SLOW_MODULES = {"test_browser", "test_browser_workflow", "test_deployment", "test_crash_safety", "test_isolation",
                "test_pipeline", "test_ensemble", "test_experiments"}
SLOW_FIXTURES = {"postgres_url", "postgres_server", "orthanc"}


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups
def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.module.__name__.rsplit(".", 1)[-1] in SLOW_MODULES or SLOW_FIXTURES & set(item.fixturenames):
            item.add_marker(pytest.mark.slow)
        # A module-scoped fixture is built once in each worker that runs a test using it (an adaptation, a trained
        # blob model, a server): a module's tests that use one go to one worker (pytest.ini: --dist loadgroup).
        module = item.nodeid.split("::")[0]
        info = getattr(item, "_fixtureinfo", None)
        if info is not None and any(d.scope == "module" and d.baseid == module
                                    for defs in info.name2fixturedefs.values() for d in defs):
            item.add_marker(pytest.mark.xdist_group(module))


def pytest_make_parametrize_id(config, val, argname):
    """A bytes parameter is named by its argument, not its content (pytest numbers the repeats): generated
    inputs hold random DICOM UIDs, and every process (pytest-xdist's workers) must collect the same test ids."""
    if isinstance(val, (bytes, bytearray)):
        return argname
    return None
