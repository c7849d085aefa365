"""Task sequences (jaxrl.lifelong): matrix bookkeeping, order search, the stage scheduler
with growth, and resume across a growth step.

The scheduler tests share one set of compiled programs (`Programs`, module-scoped) on a
tiny PPO: two CartPole variants, 2 env copies x 16 steps, 4 iterations per phase.
"""

import dataclasses
import json
import subprocess
import sys

import jax
import numpy as np
import pytest

from jaxrl import checkpoint, lifelong
from jaxrl.agents import ppo
from jaxrl.config import ConfigError


def test_transfer_metrics_on_a_hand_worked_matrix():
    # Rows: untrained, after task 1, 2, 3. Columns: tasks in training order.
    R = np.array([[10.0, 20.0, 30.0],
                  [50.0, 25.0, 35.0],
                  [40.0, 60.0, 45.0],
                  [30.0, 55.0, 90.0]])
    m = lifelong.transfer_metrics(R)
    assert m["acc"] == pytest.approx((30 + 55 + 90) / 3)
    # BWT: (R[3,0] - R[1,0] + R[3,1] - R[2,1]) / 2 = (30 - 50 + 55 - 60) / 2
    assert m["bwt"] == pytest.approx(-12.5)
    # FWT: (R[1,1] - b_1 + R[2,2] - b_2) / 2 = (25 - 20 + 45 - 30) / 2
    assert m["fwt"] == pytest.approx(10.0)
    one = lifelong.transfer_metrics(np.array([[1.0], [3.0]]))
    assert one["acc"] == 3.0 and np.isnan(one["bwt"]) and np.isnan(one["fwt"])
    with pytest.raises(ValueError, match=r"\[T \+ 1, T\]"):
        lifelong.transfer_metrics(np.zeros((3, 3)))


def test_greedy_order_and_pairwise_transfer():
    transfer = np.array([[0.0, 5.0, 1.0],
                         [2.0, 0.0, 9.0],
                         [1.0, 1.0, 0.0]])
    # Row sums off the diagonal: 6, 11, 2 -> start at 1; 1 transfers best to 2; then 0.
    assert lifelong.greedy_order(transfer) == [1, 2, 0]
    # Pairwise transfer read from first stages, columns put back in canonical order:
    # order [1, 0] has task 1 (4 - 1 = 3) in column 0 and task 0 (7 - 2 = 5) in column 1.
    res = [{"order": [1, 0], "R_mean": [[1.0, 2.0], [4.0, 7.0]]},
           {"order": [0, 1], "R_mean": [[2.0, 1.0], [3.0, 1.5]]}]
    np.testing.assert_allclose(lifelong.pairwise_transfer(res), [[1.0, 0.5], [5.0, 3.0]])
    with pytest.raises(ConfigError, match="starting with each task"):
        lifelong.pairwise_transfer(res[:1])


def test_orders():
    assert len(lifelong.make_orders(3, "all")) == 6
    four = lifelong.make_orders(3, 4, seed=1)
    assert len(set(four)) == 4 and [o[0] for o in four[:3]] == [0, 1, 2]
    with pytest.raises(ConfigError, match="orders must be 'all' or at most 6"):
        lifelong.make_orders(3, 7)


def test_tasks_parse_and_set_env_params():
    from jaxrl import envs

    task = lifelong.parse_task("CartPole-v1:length=1.5:gravity=20")
    assert task.name == "CartPole-v1:length=1.5:gravity=20"
    _, params = envs.make("CartPole-v1")
    new = lifelong.task_params(task, params)
    assert new.length == 1.5 and new.gravity == 20.0
    # Derived fields follow the ones they are computed from.
    assert new.polemass_length == pytest.approx(new.masspole * 1.5)
    maze_task = lifelong.parse_task("Maze-9x9-v0:goal=1/7")
    _, maze_params = envs.make("Maze-9x9-v0")
    goal = lifelong.task_params(maze_task, maze_params).goal
    assert goal.dtype == maze_params.goal.dtype and goal.tolist() == [1, 7]
    with pytest.raises(ConfigError, match="'pole' is not a field of EnvParams"):
        lifelong.task_params(lifelong.parse_task("CartPole-v1:pole=1"), params)
    with pytest.raises(ConfigError, match="must be field=value"):
        lifelong.parse_task("CartPole-v1:length")
    with pytest.raises(ConfigError, match="grow needs a threshold"):
        lifelong.LifelongConfig(grow=True)
    with pytest.raises(ConfigError, match="share one observation/action interface"):
        lifelong.check_interface(ppo.AGENT, ppo.Config(anneal_lr=False), [
            lifelong.parse_task("CartPole-v1"), lifelong.parse_task("Acrobot-v1")])


CONFIG = ppo.Config(env="CartPole-v1", num_envs=2, rollout_len=16, total_timesteps=128,
                    num_minibatches=2, num_epochs=1, hidden_sizes=(3,), anneal_lr=False)
TASKS = [lifelong.parse_task("CartPole-v1"), lifelong.parse_task("CartPole-v1:length=1.5")]
ALWAYS_MISSED = lifelong.LifelongConfig(threshold=1e6, grow=True, chunk=2, window=2,
                                        eval_episodes=2)


@pytest.fixture(scope="module")
def programs():
    return lifelong.Programs(ppo.AGENT, CONFIG, ALWAYS_MISSED, 1)


@pytest.fixture(scope="module")
def grown_run(programs, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("full"))
    result = lifelong.run_sequence(ppo.AGENT, CONFIG, ppo.HParams.create(), TASKS,
                                   ALWAYS_MISSED, num_seeds=1, out=out, programs=programs,
                                   log=lambda *_: None)
    return out, result


def test_scheduler_grows_exactly_when_the_threshold_is_missed(grown_run):
    out, result = grown_run
    # Threshold never reached: every task trains its budget, grows once (max_growths 1),
    # trains a second budget at double width, and stops.
    assert [e["from"] for e in result["growth"]] == [[3], [6]]
    assert [e["to"] for e in result["growth"]] == [[6], [12]]
    for event, stage in zip(result["growth"], result["stages"]):
        assert event["performance"] < event["threshold"]
        assert event["after_iterations"] == CONFIG.num_iterations
        assert [p["iterations"] for p in stage["phases"]] == [CONFIG.num_iterations] * 2
        assert [p["reached"] for p in stage["phases"]] == [False, False]
    assert result["final_sizes"] == [12]
    assert np.asarray(result["R"]).shape == (1, 3, 2)
    assert set(result["metrics"]) == {"acc", "bwt", "fwt"}
    # Every stage's checkpoint records the widths it was saved at.
    ckpt = f"{out}/{checkpoint.CHECKPOINT_DIR}"
    assert checkpoint.steps(ckpt) == [1, 2]
    assert [checkpoint.read_meta(ckpt, s)["progress"]["sizes"] for s in (1, 2)] == [[6], [12]]


def test_reaching_the_threshold_stops_a_stage_without_growth(programs):
    easy = dataclasses.replace(ALWAYS_MISSED, threshold=-1.0)
    result = lifelong.run_sequence(ppo.AGENT, CONFIG, ppo.HParams.create(), TASKS, easy,
                                   num_seeds=1, programs=programs, log=lambda *_: None)
    assert result["growth"] == []
    assert [s["iterations"] for s in result["stages"]] == [easy.chunk, easy.chunk]
    assert result["final_sizes"] == [3]


def test_resume_across_a_growth_step(grown_run, programs, tmp_path):
    _, full = grown_run
    out = str(tmp_path)
    args = (ppo.AGENT, CONFIG, ppo.HParams.create(), TASKS, ALWAYS_MISSED)
    first = lifelong.run_sequence(*args, num_seeds=1, out=out, stop_after=1,
                                  programs=programs, log=lambda *_: None)
    assert not first["complete"] and first["final_sizes"] == [6]
    messages = []
    resumed = lifelong.run_sequence(*args, num_seeds=1, out=out, programs=programs,
                                    log=messages.append)
    assert messages[0] == "resumed after stage 1 at widths (6,)"
    assert resumed["complete"] and resumed["growth"] == full["growth"]
    np.testing.assert_array_equal(np.asarray(resumed["R"]), np.asarray(full["R"]))
    for a, b in zip(jax.tree.leaves(resumed["state"].params),
                    jax.tree.leaves(full["state"].params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    other = dataclasses.replace(ALWAYS_MISSED, window=3)
    with pytest.raises(ConfigError, match="lifelong.window: checkpoint 2, requested 3"):
        lifelong.run_sequence(ppo.AGENT, CONFIG, ppo.HParams.create(), TASKS, other,
                              num_seeds=1, out=out, programs=programs, log=lambda *_: None)


@pytest.mark.slow  # a fresh process compiles every program again (about a minute)
def test_cli_writes_matrix_json_and_heatmap(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "jaxrl.cli", "lifelong", "ppo", "--tasks",
         "CartPole-v1,CartPole-v1:length=1.5", "--orders", "all", "--steps", "64",
         "--num-envs", "2", "--rollout-len", "16",
         "--hidden-sizes", "4", "--num-seeds", "1", "--eval-episodes", "2", "--out",
         str(out)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((out / "lifelong.json").read_text())
    assert len(summary["orders"]) == 2 and (out / "transfer_matrix.png").stat().st_size > 0
    assert summary["order_search"]["greedy_order"] in ([0, 1], [1, 0])
    assert np.asarray(summary["pairwise_transfer"]).shape == (2, 2)
    bad = subprocess.run([sys.executable, "-m", "jaxrl.cli", "lifelong", "ppo", "--tasks",
                          "CartPole-v1:pole=1", "--out", str(tmp_path / "x")],
                         capture_output=True, text=True, timeout=600)
    assert bad.returncode == 2 and "'pole' is not a field" in bad.stderr


def test_extra_phases_without_growth_keep_the_width(programs):
    budget_matched = dataclasses.replace(ALWAYS_MISSED, grow=False, max_phases=2)
    result = lifelong.run_sequence(ppo.AGENT, CONFIG, ppo.HParams.create(), TASKS[:1],
                                   budget_matched, num_seeds=1, programs=programs,
                                   log=lambda *_: None)
    assert result["growth"] == [] and result["final_sizes"] == [3]
    assert [p["iterations"] for p in result["stages"][0]["phases"]] == [CONFIG.num_iterations] * 2
