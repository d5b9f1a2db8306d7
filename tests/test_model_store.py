"""The model store and training logs under damage: interrupted saves, kills
(SIGKILL at named points and at random times), crafted paths, non-finite
weights, malformed metadata and indexes, bad names, incompatible resumes,
missing models and unusable output folders.

Kill tests run a child process with ``FINSIM_CRASH_AT=<point>[:n]`` (it
SIGKILLs itself there, see ``checkpoint.crash_point``), check that it really
died there, then that everything saved before is intact, the store loads and a
new save (or a new ``finsim train``) succeeds.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")

from safetensors.torch import save_file  # noqa: E402

from finsim_mesa.cli import main  # noqa: E402
from finsim_mesa.errors import FinsimError  # noqa: E402
from finsim_mesa.learning.checkpoint import (  # noqa: E402
    CheckpointError,
    ModelCheckpointer,
    install_folder,
    load_folder,
    locked,
)
from finsim_mesa.learning.logging import TrainingLogger  # noqa: E402
from finsim_mesa.learning.mappo import MAPPO, MAPPOConfig  # noqa: E402
from finsim_mesa.learning.policy_brain import PolicyBrain  # noqa: E402
from finsim_mesa.learning.registry import ModelRegistry  # noqa: E402

KILLED = -signal.SIGKILL
META = {"obs_dim": 16, "mappo": MAPPOConfig(hidden=8).to_dict()}
OUR_NAMES = re.compile(r"index\.json|v[1-9][0-9]*")
OBS = np.zeros((2, 16), np.float32)


def weights(mean: float) -> dict[str, torch.Tensor]:
    """Weights whose policy acts with ``mean`` on every action (identifiable)."""
    cfg = MAPPOConfig(hidden=8, init_action_mean=mean)
    return MAPPO(3, 16, cfg).state_dict()


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def acts(folder: Path) -> float:
    return float(PolicyBrain.load(folder).act(OBS).mean())


def run_child(code: str, *args: str, crash: str | None = None, exchange: bool = True,
              timeout: float = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("FINSIM_CRASH_AT", None)
    if crash:
        env["FINSIM_CRASH_AT"] = crash
    if not exchange:
        env["FINSIM_RENAME_EXCHANGE"] = "0"
    return subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True,
                          text=True, timeout=timeout)


def finsim(*args: str, crash: str | None = None, exchange: bool = True
           ) -> subprocess.CompletedProcess:
    return run_child("import sys; from finsim_mesa.cli import main; sys.exit(main())", *args,
                     crash=crash, exchange=exchange, timeout=300)


# ---------------------------------------------------------------- 1. version numbers
def test_delete_then_save_never_reuses_or_collides(tmp_path):
    reg = ModelRegistry(tmp_path)
    a, b, c = weights(0.2), weights(0.5), weights(0.8)
    assert reg.register("m", a, META, 1.0) == "v1"
    assert reg.register("m", b, META, 2.0) == "v2"
    reg.delete("m", "v1")
    assert reg.register("m", c, META, 0.5) == "v3"  # was: v2 -> FileExistsError
    reg.delete("m", "v3")
    assert reg.register("m", c, META, 0.5) == "v4"  # a deleted number is never given again
    assert reg.versions("m").version.tolist() == ["v2", "v4"]
    assert same(reg.checkpointer.load_checkpoint("m", "latest")[0], c)
    assert same(reg.checkpointer.load_checkpoint("m", "best")[0], b)


def test_orphan_and_stray_folders_left_by_killed_saves(tmp_path):
    ck = ModelCheckpointer(tmp_path)
    a, b = weights(0.2), weights(0.7)
    ck.save_checkpoint("m", a, META, 1.0)
    folder = tmp_path / "m"
    # what the old code left when killed between mkdir and index.json: an
    # incomplete v2 folder (weights only) ...
    (folder / "v2").mkdir()
    shutil.copy(folder / "v1" / "weights.safetensors", folder / "v2")
    # ... and temporary files and folders of killed writers
    (folder / ".index.json.tmp-0123abcd").write_text("{")
    (folder / ".v5.tmp-89abcdef").mkdir()
    (folder / ".v5.tmp-89abcdef" / "meta.json").write_text("[")
    assert [e["version"] for e in ck.list_checkpoints("m")] == ["v1"]  # ignored
    assert ck.save_checkpoint("m", b, META, 2.0) == "v3"  # was: FileExistsError forever
    assert sorted(os.listdir(folder)) == ["index.json", "v1", "v2", "v3"]  # strays cleaned
    assert same(ck.load_checkpoint("m", "best")[0], b)
    # a complete version folder whose index entry was lost is adopted
    shutil.copytree(folder / "v3", folder / "v4")
    meta = json.loads((folder / "v4" / "meta.json").read_text())
    (folder / "v4" / "meta.json").write_text(json.dumps(meta | {"version": "v4",
                                                                "metric": 9.0}))
    assert [e["version"] for e in ck.list_checkpoints("m")] == ["v1", "v3", "v4"]
    assert ck.load_checkpoint("m", "best")[1]["version"] == "v4"
    assert ck.save_checkpoint("m", a, META) == "v5"
    # a model folder whose very first save lost its index
    (tmp_path / "n").mkdir()
    shutil.copytree(folder / "v1", tmp_path / "n" / "v1")
    assert ck.load_checkpoint("n", "latest")[1]["metric"] == 1.0
    assert {e["model_id"] for e in ck.list_checkpoints()} == {"m", "n"}
    assert ck.save_checkpoint("n", b, META) == "v2"


# ---------------------------------------------------------------- 2. kills
CHILD = r"""
import sys
from pathlib import Path
from safetensors.torch import load_file
from finsim_mesa.learning.checkpoint import ModelCheckpointer, install_folder
from finsim_mesa.learning.logging import TrainingLogger
from finsim_mesa.learning.registry import ModelRegistry
root, op = Path(sys.argv[1]), sys.argv[2]
meta = {"obs_dim": 16, "mappo": {"hidden": 8}}
if op == "save":
    ModelCheckpointer(root / "store").save_checkpoint(
        "m", load_file(root / "new.safetensors"), meta, metric=5.0)
elif op == "delete":
    ModelRegistry(root / "store").delete("m", "v2")
elif op == "promote":
    ModelRegistry(root / "store").promote("m", "v1")
elif op == "install":
    install_folder(root / "store" / "m" / "v2", root / "best")
elif op == "log":
    TrainingLogger(root / "logs", tensorboard=False).log(
        {"episode": 3, "reward": 0.5, "eval_reward": 2.0})
elif op == "loop":  # saves, swaps and logs until killed
    ck, lg = ModelCheckpointer(root / "store"), TrainingLogger(root / "logs", tensorboard=False)
    w = load_file(root / "new.safetensors")
    print("ready", flush=True)
    for k in range(10_000):
        v = ck.save_checkpoint("m", w, meta, metric=float(k))
        install_folder(root / "store" / "m" / v, root / "best")
        lg.log({"episode": 10 + k, "reward": float(k)})
print("done")
"""


def kill_store(tmp_path: Path) -> dict[str, dict[str, torch.Tensor]]:
    """A store with v1 (0.2, metric 1) and v2 (0.8, metric 3: best), ``best/``
    = v1, logs with two records, and the weights a child saves (0.5)."""
    w = {"v1": weights(0.2), "v2": weights(0.8), "new": weights(0.5)}
    meta = {"obs_dim": 16, "mappo": {"hidden": 8}}
    ck = ModelCheckpointer(tmp_path / "store")
    ck.save_checkpoint("m", w["v1"], meta, 1.0)
    ck.save_checkpoint("m", w["v2"], meta, 3.0)
    install_folder(tmp_path / "store" / "m" / "v1", tmp_path / "best")
    save_file(w["new"], tmp_path / "new.safetensors")
    lg = TrainingLogger(tmp_path / "logs", tensorboard=False)
    lg.log({"episode": 1, "reward": 0.1})
    lg.log({"episode": 2, "reward": 0.2})
    return w


def check_after_kill(tmp_path: Path, w: dict[str, dict[str, torch.Tensor]]) -> dict:
    """Everything saved before the kill is intact, the store loads, a new save
    works and leaves no temporary files. Returns what the store holds."""
    ck = ModelCheckpointer(tmp_path / "store")
    listed = ck.list_checkpoints("m")
    assert all("error" not in e for e in listed), listed
    loaded = {e["version"]: ck.load_checkpoint("m", e["version"])[0] for e in listed}
    assert same(loaded["v1"], w["v1"])  # saved before: intact
    best_w, best_meta = ck.load_checkpoint("m", "best")
    assert any(same(best_w, w[k]) for k in ("v1", "v2", "new"))
    plain_w, _ = load_folder(tmp_path / "best")  # complete, old or new
    plain = [k for k in w if same(plain_w, w[k])]
    assert plain, "best/ holds weights nobody saved"
    records = pd.read_csv(tmp_path / "logs" / "training.csv")
    assert records.episode.tolist()[:2] == [1, 2]
    state = {"versions": list(loaded), "best": best_meta["version"],
             "plain_best": plain[0],
             "log_rows": len(records)}
    # new writes succeed and clean up after the killed writer
    v = ck.save_checkpoint("m", w["new"], META, 0.0)
    assert v not in state["versions"] and int(v[1:]) > max(int(x[1:]) for x in loaded)
    install_folder(tmp_path / "store" / "m" / v, tmp_path / "best")
    assert same(load_folder(tmp_path / "best")[0], w["new"])
    lg = TrainingLogger(tmp_path / "logs", tensorboard=False)
    lg.log({"episode": 9, "reward": 0.9})
    table = pd.read_csv(tmp_path / "logs" / "training.csv")
    jsonl = (tmp_path / "logs" / "training.jsonl").read_text().splitlines()
    assert len(table) == len(jsonl) == len(lg.records) and table.episode.iloc[-1] == 9
    assert all(OUR_NAMES.fullmatch(n) for n in os.listdir(tmp_path / "store" / "m"))
    assert sorted(os.listdir(tmp_path)) == ["best", "logs", "new.safetensors", "store"]
    assert not [n for n in os.listdir(tmp_path / "logs") if n.startswith(".")]
    return state


# (operation, crash point, exchange available, what the store holds after the kill)
KILLS = [
    ("save", "save.partial", True, {"versions": ["v1", "v2"], "best": "v2"}),
    ("save", "save.folder_written", True, {"versions": ["v1", "v2"], "best": "v2"}),
    ("save", "save.renamed", True, {"versions": ["v1", "v2", "v3"], "best": "v3"}),  # adopted
    ("save", "index.tmp_written", True, {"versions": ["v1", "v2", "v3"], "best": "v3"}),
    ("save", "index.replaced", True, {"versions": ["v1", "v2", "v3"], "best": "v3"}),
    ("delete", "index.tmp_written", True, {"versions": ["v1", "v2"], "best": "v2"}),
    ("delete", "delete.indexed", True, {"versions": ["v1"], "best": "v1"}),
    ("promote", "index.tmp_written", True, {"best": "v2"}),
    ("install", "swap.partial", True, {"plain_best": "v1"}),
    ("install", "swap.new_complete", True, {"plain_best": "v1"}),
    ("install", "swap.exchanged", True, {"plain_best": "v2"}),
    ("install", "swap.old_aside", False, {"plain_best": "v2"}),  # name missing: recovered
    ("install", "swap.new_in", False, {"plain_best": "v2"}),
    ("log", "log.appended", True, {"log_rows": 2}),  # the CSV catches up on the next open
    ("log", "log.csv.tmp_written", True, {"log_rows": 2}),
    ("log", "log.csv.replaced", True, {"log_rows": 3}),
]


@pytest.mark.parametrize(("op", "point", "exchange", "expect"), KILLS,
                         ids=[f"{k[0]}-{k[1]}{'' if k[2] else '-noexchange'}" for k in KILLS])
def test_store_killed_at_each_point(tmp_path, op, point, exchange, expect):
    w = kill_store(tmp_path)
    before = {p: p.read_bytes() for p in (tmp_path / "store" / "m" / "v1").iterdir()}
    r = run_child(CHILD, str(tmp_path), op, crash=point, exchange=exchange)
    assert r.returncode == KILLED, (r.returncode, r.stdout, r.stderr)  # it died right there
    if point == "swap.old_aside":
        assert not (tmp_path / "best").exists()  # the instant the portable swap has no name
        assert acts(tmp_path / "best") == pytest.approx(0.8, abs=1e-4)  # readers recover
    state = check_after_kill(tmp_path, w)
    for key, value in expect.items():
        assert state[key] == value, (key, state)
    assert {p: p.read_bytes() for p in (tmp_path / "store" / "m" / "v1").iterdir()} == before


@pytest.mark.slow
def test_store_killed_at_random_times(tmp_path):
    """A child saving, swapping ``best`` and logging in a loop is SIGKILLed at
    random moments; every time the store and the logs are whole."""
    rng = random.Random(7)
    w = kill_store(tmp_path)
    for _ in range(5):
        env = dict(os.environ)
        env.pop("FINSIM_CRASH_AT", None)
        proc = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path), "loop"],
                                env=env, stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.05, 0.6))
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        proc.stdout.close()
        ck = ModelCheckpointer(tmp_path / "store")
        assert all("error" not in e for e in ck.list_checkpoints("m"))
        assert same(ck.load_checkpoint("m", "v1")[0], w["v1"])
        best_w, _ = load_folder(tmp_path / "best")
        assert any(same(best_w, w[k]) for k in w)
        assert len(pd.read_csv(tmp_path / "logs" / "training.csv")) >= 2
    check_after_kill(tmp_path, w)


TRAIN = ["train", "--episodes", "4", "--episodes-per-update", "2", "--eval-every", "2",
         "--banks", "3", "--steps", "3", "--eval-seeds", "1", "--hidden", "8", "--scenario",
         "normal", "-q"]


def check_train_out(out: Path, best: bool = True, logs: bool = True) -> None:
    """What a (killed) training left loads: best/ (and final/ when there), the
    registry, and logs whose CSV is the JSONL or one record behind it."""
    for name in ("best", "final"):
        if (name == "best" and best) or (out / name).exists():
            brain = PolicyBrain.load(out / name)
            assert np.isfinite(brain.act(OBS)).all()
    ModelRegistry(out / "registry").load_brain("mappo", "best")
    assert all("error" not in e for e in ModelCheckpointer(out / "registry").list_checkpoints())
    if logs:
        jsonl = (out / "logs" / "training.jsonl").read_text().splitlines()
        table = pd.read_csv(out / "logs" / "training.csv")
        assert len(table) in (len(jsonl), len(jsonl) - 1)
        assert [json.loads(x)["episode"] for x in jsonl][:len(table)] == table.episode.tolist()


@pytest.mark.slow
@pytest.mark.parametrize(("point", "first_best"), [
    ("save.renamed:2", True),          # the second registry save (best or final)
    ("train.saved_best:1", False),     # registry has the first best, best/ not yet
    ("log.csv.tmp_written:2", True),   # mid-way through the logs
])
def test_finsim_train_killed_then_trained_again(tmp_path, point, first_best):
    out = tmp_path / "out"
    r = finsim(*TRAIN, "--out", str(out), crash=point)
    assert r.returncode == KILLED, (r.returncode, r.stderr[-2000:])
    check_train_out(out, best=first_best, logs=first_best)
    assert (out / "best").exists() == first_best
    r = finsim(*TRAIN, "--out", str(out))  # was: FileExistsError at its first save
    assert r.returncode == 0, r.stderr[-2000:]
    check_train_out(out)
    assert PolicyBrain.load(out / "final").meta["episode"] == 4
    assert not [n for n in os.listdir(out) if n.startswith(".")]


@pytest.mark.slow
def test_finsim_train_killed_between_the_renames_of_best(tmp_path):
    """Without the atomic exchange, ``best`` is missing for an instant: a kill
    there still leaves a loadable best, and the next run finishes the swap."""
    out = tmp_path / "out"
    assert finsim(*TRAIN, "--out", str(out)).returncode == 0
    r = finsim(*TRAIN, "--seed", "5", "--out", str(out), crash="swap.old_aside:1",
               exchange=False)
    assert r.returncode == KILLED, r.stderr[-2000:]
    assert not (out / "best").exists()
    assert np.isfinite(acts(out / "best"))  # read from the new folder beside it
    assert main(["evaluate", "--models", str(out), "--model", "best", "--episodes", "2",
                 "-q", "--no-baselines"]) == 0
    r = finsim(*TRAIN, "--out", str(out), exchange=False)
    assert r.returncode == 0, r.stderr[-2000:]
    check_train_out(out)
    assert not [n for n in os.listdir(out) if n.startswith(".")]


# ---------------------------------------------------------------- 3. paths
def make_checkpoint(folder: Path, w: dict[str, torch.Tensor] | None = None) -> Path:
    ck = ModelCheckpointer(folder.parent / ".make")
    v = ck.save_checkpoint("x", w or weights(0.3), META, 1.0)
    shutil.copytree(ck.root / "x" / v, folder)
    shutil.rmtree(ck.root)
    return folder


def test_paths_are_confined_to_the_store(tmp_path):
    root = tmp_path / "store"
    ck = ModelCheckpointer(root)
    ck.save_checkpoint("good", weights(0.2), META, 1.0)
    make_checkpoint(tmp_path / "elsewhere" / "x" / "v1")
    # an index listing a path outside
    (root / "evil").mkdir()
    (root / "evil" / "index.json").write_text(json.dumps(
        {"versions": ["../../elsewhere/x/v1"], "best": "../../elsewhere/x/v1",
         "latest": "../../elsewhere/x/v1", "best_metric": 1.0}))
    with pytest.raises(CheckpointError, match=r"index\.json.*'\.\./\.\./elsewhere/x/v1'"):
        ck.load_checkpoint("evil")
    # a version folder, a model folder and a file that are symlinks out of the store
    (root / "link").mkdir()
    (root / "link" / "v1").symlink_to(tmp_path / "elsewhere" / "x" / "v1")
    (root / "link" / "index.json").write_text(json.dumps(
        {"versions": ["v1"], "best": "v1", "latest": "v1", "best_metric": 1.0}))
    (root / "linkdir").symlink_to(tmp_path / "elsewhere" / "x")
    shutil.copytree(root / "good", root / "filelink")
    (root / "filelink" / "v1" / "weights.safetensors").unlink()
    (root / "filelink" / "v1" / "weights.safetensors").symlink_to(
        tmp_path / "elsewhere" / "x" / "v1" / "weights.safetensors")
    for mid in ("link", "linkdir", "filelink"):
        with pytest.raises(CheckpointError, match="outside the model store"):
            ck.load_checkpoint(mid)
        with pytest.raises(CheckpointError, match="outside the model store"):
            ModelRegistry(root).load_brain(mid)
    listing = {e["model_id"]: e for e in ck.list_checkpoints()}
    assert "error" not in listing["good"] and all("error" in listing[m] for m in
                                                  ("evil", "link", "linkdir"))
    for mid in ("../elsewhere", "/abs", "a/b", ".."):
        with pytest.raises(CheckpointError, match="plain name"):
            ck.load_checkpoint(mid)
    with pytest.raises(CheckpointError, match=r"no version '\.\./v1'"):
        ck.load_checkpoint("good", "../v1")
    # a plain folder that is a symlink out of a server's models folder
    models = tmp_path / "models"
    models.mkdir()
    (models / "final").symlink_to(tmp_path / "elsewhere" / "x" / "v1")
    with pytest.raises(CheckpointError, match="outside the model store"):
        PolicyBrain.load(models / "final", root=models)
    with pytest.raises(CheckpointError, match="outside the model store"):
        PolicyBrain.load(models / "final" / ".." / ".." / "elsewhere" / "x" / "v1",
                         root=models)
    assert acts(models / "final") == pytest.approx(0.3, abs=1e-4)  # a CLI path: allowed


# ---------------------------------------------------------------- 4. non-finite weights
@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_weights_are_refused(tmp_path, value):
    ck = ModelCheckpointer(tmp_path / "store")
    w = weights(0.3)
    w["actor.head.bias"] = w["actor.head.bias"].clone()
    w["actor.head.bias"][0] = value
    with pytest.raises(CheckpointError, match=r"non-finite.*actor\.head\.bias"):
        ck.save_checkpoint("m", w, META)
    assert not (tmp_path / "store" / "m" / "v1").exists()  # nothing written
    folder = make_checkpoint(tmp_path / "ok")
    save_file(w, folder / "weights.safetensors")  # damaged after it was written
    with pytest.raises(CheckpointError, match=r"non-finite.*actor\.head\.bias"):
        PolicyBrain.load(folder)
    with pytest.raises(CheckpointError, match="metric"):
        ck.save_checkpoint("m", weights(0.3), META, metric=value)


# ---------------------------------------------------------------- 5. bad input
@pytest.fixture
def good_folder(tmp_path):
    folder = make_checkpoint(tmp_path / "ck")
    return folder, json.loads((folder / "meta.json").read_text())


BAD_METAS = [
    (lambda m: "[1, 2]", "must be a JSON object, got a list"),
    (lambda m: "null", "must be a JSON object, got a NoneType"),
    (lambda m: json.dumps(m)[:40], "corrupted"),
    (lambda m: "", "corrupted"),
    (lambda m: json.dumps({k: v for k, v in m.items() if k != "obs_dim"}), "no 'obs_dim'"),
    (lambda m: json.dumps({k: v for k, v in m.items() if k != "mappo"}), "no 'mappo'"),
    (lambda m: json.dumps(m | {"mappo": {}}), "no 'mappo.hidden'"),
    (lambda m: json.dumps(m | {"obs_dim": "16"}), "'obs_dim' must be a positive integer"),
    (lambda m: json.dumps(m | {"obs_dim": True}), "'obs_dim' must be a positive integer"),
    (lambda m: json.dumps(m | {"obs_dim": -3}), "'obs_dim' must be a positive integer"),
    (lambda m: json.dumps(m | {"obs_dim": 10**9}), "do not fit"),
    (lambda m: json.dumps(m | {"mappo": [8]}), "'mappo' must be an object"),
    (lambda m: json.dumps(m | {"mappo": m["mappo"] | {"hidden": 8.5}}),
     "'mappo.hidden' must be a positive integer"),
    (lambda m: json.dumps(m | {"mappo": m["mappo"] | {"hidden": 10**7}}), "do not fit"),
    (lambda m: json.dumps(m | {"mappo": m["mappo"] | {"normalize_obs": "yes"}}),
     "'mappo.normalize_obs' must be true or false"),
    (lambda m: json.dumps({k: v for k, v in m.items() if k != "format_version"}),
     "format None is not supported"),
    (lambda m: b"\xff\xfe{", "corrupted"),
]


@pytest.mark.parametrize(("damage", "message"), BAD_METAS)
def test_bad_metadata_is_a_clear_checkpoint_error(good_folder, damage, message):
    folder, meta = good_folder
    data = damage(meta)
    (folder / "meta.json").write_bytes(data if isinstance(data, bytes) else data.encode())
    with pytest.raises(CheckpointError, match=re.escape(message)) as err:
        PolicyBrain.load(folder)
    assert str(folder) in str(err.value)


BAD_INDEXES = [
    ("not json", "corrupted"),
    ("", "corrupted"),
    ("[]", "must be a JSON object, got a list"),
    ("{}", "the key 'versions' is missing"),
    ('{"versions": ["v1"], "best": "v1"}', "the key 'latest' is missing"),
    ('{"versions": "v1", "best": null, "latest": null}', "'versions' must be a list"),
    ('{"versions": [1], "best": null, "latest": null}', "lists 1, which is not a version"),
    ('{"versions": ["v1", "v1"], "best": null, "latest": null}', "lists a version twice"),
    ('{"versions": ["v1"], "best": "v9", "latest": "v1"}', "'best' is 'v9'"),
    ('{"versions": ["v1"], "best": "v1", "latest": "v1", "best_metric": "high"}',
     "'best_metric' must be a number"),
    ('{"versions": ["v1"], "best": "v1", "latest": "v1", "next": -1}',
     "'next' must be a positive integer"),
    ('{"versions": ["../../x/v1"], "best": null, "latest": null}',
     "lists '../../x/v1', which is not a version"),
]


@pytest.mark.parametrize(("text", "message"), BAD_INDEXES)
def test_malformed_index_is_a_clear_error_and_listing_goes_on(tmp_path, text, message):
    reg = ModelRegistry(tmp_path)
    reg.register("good", weights(0.2), META, 1.0)
    reg.register("bad", weights(0.2), META, 1.0)
    (tmp_path / "bad" / "index.json").write_text(text)
    with pytest.raises(CheckpointError, match=re.escape(message)) as err:
        reg.checkpointer.load_checkpoint("bad")
    assert str(tmp_path / "bad" / "index.json") in str(err.value)
    with pytest.raises(CheckpointError, match=re.escape(message)):
        reg.load_brain("bad")
    with pytest.raises(CheckpointError, match=re.escape(message)):
        reg.checkpointer.save_checkpoint("bad", weights(0.2), META)  # never overwritten
    listing = reg.checkpointer.list_checkpoints()
    assert [e["version"] for e in listing if e["model_id"] == "good"] == ["v1"]
    assert message in next(e for e in listing if e["model_id"] == "bad")["error"]
    table = reg.versions()
    assert table.set_index("model_id").loc["good", "error"] is None
    assert message in table.set_index("model_id").loc["bad", "error"]


def test_damaged_meta_in_a_listing(tmp_path):
    reg = ModelRegistry(tmp_path)
    for k in range(3):
        reg.register("m", weights(0.2), META, float(k))
    (tmp_path / "m" / "v2" / "meta.json").write_text('{"cut')
    (tmp_path / "m" / "v3" / "meta.json").write_text("[]")
    listing = reg.checkpointer.list_checkpoints()
    assert [e["version"] for e in listing] == ["v1", "v2", "v3"]
    assert "error" not in listing[0]
    assert "v2" in listing[1]["error"] and "meta.json" in listing[1]["error"]
    assert "JSON object" in listing[2]["error"]
    t = reg.versions("m").set_index("version")
    assert t.error.isna().tolist() == [True, False, False] and t.loc["v1", "metric"] == 0.0
    reg.delete("m", "v3")  # the best goes: the best remaining readable one takes it
    assert reg.best("m") == "v1"


@pytest.mark.parametrize("name", ["api\n", "../x", "", ".hidden", "a/b", "a..b", "x" * 65,
                                  "sp ace", 7])
def test_model_names_are_checked_in_full(tmp_path, name):
    with pytest.raises(CheckpointError, match="plain name"):
        ModelCheckpointer(tmp_path).save_checkpoint(name, weights(0.2), META)
    assert os.listdir(tmp_path) == []


@pytest.mark.slow
def test_resume_that_does_not_fit_is_refused_before_training(tmp_path, capsys):
    out = tmp_path / "out"
    assert main([*TRAIN[:-1], "--episodes", "2", "--out", str(out), "-q"]) == 0
    capsys.readouterr()
    cases = [(["--hidden", "16"], ["hidden units 8 vs 16", "--hidden 8"]),
             (["--normalize-obs"], ["normalize_obs False vs True"]),
             (["--hidden", "4", "--normalize-obs"], ["hidden units 8 vs 4", "normalize_obs"])]
    for flags, words in cases:
        again = tmp_path / "again"
        code = main([*TRAIN, "--out", str(again), "--resume", str(out / "final"), *flags])
        err = capsys.readouterr().err
        assert code == 2 and "cannot resume" in err and "Traceback" not in err, err
        assert all(w in err for w in words), err
        assert not (again / "registry").exists()  # refused before any training
    (out / "best" / "meta.json").write_text("[]")
    for path, word in ((out / "best", "JSON object"), (tmp_path / "nothere", "does not exist")):
        assert main([*TRAIN, "--out", str(tmp_path / "again"), "--resume", str(path)]) == 2
        err = capsys.readouterr().err
        assert "cannot resume" in err and word in err, err
    # a registry model folder resumes from its best version
    assert main([*TRAIN, "--episodes", "2", "--out", str(tmp_path / "r"), "--resume",
                 str(out / "registry" / "mappo")]) == 0


# ---------------------------------------------------------------- 6. missing model, bad --out
def test_evaluate_without_a_model_says_how_to_make_one(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["evaluate", "-q", "--episodes", "2"]) == 2
    err = capsys.readouterr().err
    assert "no trained model at models/final" in err and "does not exist" in err, err
    assert "finsim train --out models" in err and "incomplete" not in err
    (tmp_path / "m" / "best").mkdir(parents=True)
    assert main(["evaluate", "-q", "--models", "m", "--model", "best", "--episodes", "2"]) == 2
    err = capsys.readouterr().err
    assert "no trained model at m/best" in err and "finsim train --out m" in err, err
    assert main(["evaluate", "-q", "--model", "nowhere/ck", "--episodes", "2"]) == 2
    assert "no trained model at nowhere/ck" in capsys.readouterr().err


def test_train_checks_its_output_folder_before_training(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    (tmp_path / "o" / "logs").parent.mkdir()
    (tmp_path / "o" / "logs").write_text("x")
    for out, words in ((tmp_path / "file", "is a file"),
                       (tmp_path / "file" / "sub", "cannot be written"),
                       (tmp_path / "o", "logs is a file")):
        t0 = time.perf_counter()
        assert main([*TRAIN, "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert words in err and str(out) in err, err
        assert time.perf_counter() - t0 < 5  # before any training
    assert not (tmp_path / "o" / "registry").exists()
    busy = tmp_path / "busy"
    with locked(busy):  # another run writes there
        assert main([*TRAIN, "--out", str(busy)]) == 2
        assert "in use by another process" in capsys.readouterr().err


def test_logs_keep_earlier_runs_and_survive_a_cut_line(tmp_path):
    lg = TrainingLogger(tmp_path, tensorboard=False)
    lg.log({"episode": 1, "reward": 1.0})
    with open(tmp_path / "training.jsonl", "a") as f:
        f.write('{"episode": 2, "rew')  # a line cut short (power loss)
    lg2 = TrainingLogger(tmp_path, tensorboard=False)
    lg2.log({"episode": 3, "reward": 3.0, "eval_reward": 2.0})
    table = pd.read_csv(tmp_path / "training.csv")
    assert table.episode.tolist() == [1, 3] and table.eval_reward.isna().tolist() == [True,
                                                                                       False]
    lines = (tmp_path / "training.jsonl").read_text().splitlines()
    assert json.loads(lines[-1])["episode"] == 3 and len(lines) == 3


# ---------------------------------------------------------------- through the API
def test_api_models_listing_and_loading_with_a_damaged_store(tmp_path):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from finsim_mesa.api import create_app

    models = tmp_path / "models"
    reg = ModelRegistry(models / "registry")
    reg.register("ok", weights(0.2), META, 1.0)
    reg.register("ok", weights(0.2), META, 2.0)
    (models / "registry" / "ok" / "v2" / "meta.json").write_text("{")
    make_checkpoint(tmp_path / "elsewhere" / "x" / "v1")
    (models / "registry" / "evil").mkdir()
    (models / "registry" / "evil" / "index.json").write_text(json.dumps(
        {"versions": ["../../../elsewhere/x/v1"], "best": None, "latest": None}))
    w = weights(0.2)
    w["actor.body.0.weight"] = torch.full_like(w["actor.body.0.weight"], float("nan"))
    folder = make_checkpoint(models / "nan")
    save_file(w, folder / "weights.safetensors")
    with TestClient(create_app(str(models))) as c:
        r = c.get("/models")
        assert r.status_code == 200, r.text
        names = {m["name"] for m in r.json()}
        assert {"ok/v1", "ok/v2", "nan"} <= names
        training = c.app.state.training  # what POST /models/load calls (-> 422)
        for name, version, word in (("evil", "best", "not a version"),
                                    ("nan", "best", "non-finite"),
                                    ("ok", "v2", "corrupted")):
            with pytest.raises(CheckpointError, match=word):
                training.resolve(name, version)
        assert training.resolve("ok", "v1").obs_dim == 16
        training._weights, training._meta = weights(0.2), dict(META)
        r = c.post("/models/save", json={"name": "api\n"})
        assert r.status_code == 422, r.text
        with pytest.raises(FinsimError, match="use letters, digits"):  # the manager's own
            training.save("api\n", None)  # check matches the whole name (it once let it through)
        assert not (models / "registry" / "api\n").exists()
