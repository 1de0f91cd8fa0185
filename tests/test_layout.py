"""The package's imports point one way: leaves <- data <- train, serve <- the Python API <- the scripts.

Every `common.*` import is read from the source (top level and inside functions alike), so a
new module or a lazy import that breaks the direction fails here, not in a review."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = {"leaf": 0, "data": 1, "train": 2, "serve": 2, "api": 3, "script": 4}
API = ("common.api", "common.estimators")  # the public Python API, over train and serve


def layer_of(module: str) -> str:
    parts = module.split(".")
    if parts[0] != "common":
        return "script"
    if module in API:
        return "api"
    return parts[1] if len(parts) > 2 and parts[1] in ("data", "train", "serve") else "leaf"


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    return ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)


def common_imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("common"):
            found |= {node.module} if node.module != "common" else {f"common.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("common")}
    return found


def allowed(importer: str, imported: str) -> bool:
    src, dst = layer_of(importer), layer_of(imported)
    if src == dst:
        return True
    return LAYERS[dst] < LAYERS[src]  # train and serve never import each other: same rank, different names


SOURCES = sorted([*ROOT.glob("common/**/*.py"), *ROOT.glob("*.py")])


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_point_one_way(path):
    importer = module_name(path)
    wrong = sorted(m for m in common_imports(path) if not allowed(importer, m))
    assert not wrong, f"{importer} ({layer_of(importer)}) imports {wrong}"


def test_the_rule_catches_a_wrong_import():
    assert not allowed("common.data.dataset", "common.train.run_plan")
    assert not allowed("common.train.trainer", "common.serve.predict")
    assert not allowed("common.model", "common.data.preprocess")
    assert allowed("common.serve.predict", "common.data.tables")
    assert allowed("train", "common.train.run_plan")
    assert allowed("common.api", "common.train.session") and not allowed("common.train.session", "common.api")


def test_every_subpackage_module_is_checked():
    names = {module_name(p) for p in SOURCES}
    assert {"common.data.dataset", "common.train.run_plan", "common.serve.predict", "train"} <= names


@pytest.mark.parametrize("script", ["make_data.py", "train.py", "infer.py"])
def test_each_script_quiets_ctrl_c_before_its_other_imports(script):
    """torch loads for seconds: a Ctrl-C meanwhile must find common.errors.quiet_start's handler."""
    body = [node for node in ast.parse((ROOT / script).read_text()).body
            if not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant))  # the docstring
            and not (isinstance(node, ast.ImportFrom) and node.module == "__future__")]
    first, second = body[:2]
    assert isinstance(first, ast.ImportFrom) and first.module == "common.errors"
    assert [alias.name for alias in first.names] == ["quiet_start"]
    assert isinstance(second, ast.Expr) and isinstance(second.value, ast.Call)
    assert isinstance(second.value.func, ast.Name) and second.value.func.id == "quiet_start"
    assert [ast.unparse(arg) for arg in second.value.args] == ["__name__"]


def test_importing_a_script_leaves_the_callers_ctrl_c_alone():
    """An imported script's first call sees its module's name, not "__main__": nothing changes."""
    import signal

    from common.errors import quiet_start

    before = signal.getsignal(signal.SIGINT)
    quiet_start("train")
    assert signal.getsignal(signal.SIGINT) is before


def test_a_script_collects_no_garbage_while_it_loads_and_never_walks_what_it_loaded():
    """Run as a script: the collector is off through the imports, and run_cli turns it back on
    with what they made frozen (a full collection walked ~170k objects, 20-80 ms each time)."""
    import gc
    import signal

    from common import errors

    handler, enabled, frozen = signal.getsignal(signal.SIGINT), gc.isenabled(), gc.get_freeze_count()
    terminate, script = signal.getsignal(signal.SIGTERM), errors._script_process
    try:
        errors.quiet_start("__main__")
        assert not gc.isenabled()
        loaded = [[] for _ in range(1000)]  # what an import leaves for the process's lifetime
        errors.run_cli(lambda: None)
        assert gc.isenabled()
        assert gc.get_freeze_count() >= frozen + len(loaded)
    finally:
        gc.unfreeze()
        gc.enable() if enabled else gc.disable()
        signal.signal(signal.SIGINT, handler)
        signal.signal(signal.SIGTERM, terminate)
        errors._script_process = script
