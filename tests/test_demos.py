"""Demonstrations: recording, the versioned .npz round trip, and every refusal on load."""

import os
import sys

import jax
import numpy as np
import pytest

from jaxrl import cli, demos, envs
from jaxrl.agents import REGISTRY
from jaxrl.config import ConfigError

sys.path.insert(0, os.path.dirname(__file__))
import imitation_data  # noqa: E402


@pytest.fixture(scope="module")
def recorded():
    return demos.record(imitation_data.scripted_expert(), 3, seed=0)


def _spec(env_id):
    env, params = envs.make(env_id)
    return envs.env_spec(env, params)


def test_recorded_episodes_are_complete_and_episode_major(recorded):
    d = recorded
    ep = np.asarray(d.episode)
    assert d.num_episodes == 3 and d.size == len(ep)
    assert ep[0] == 0 and np.all(np.diff(ep) >= 0) and ep[-1] == 2
    done = np.asarray(d.terminated) | np.asarray(d.truncated)
    ends = np.flatnonzero(np.diff(ep)).tolist() + [d.size - 1]
    assert done[ends].all() and done.sum() == 3
    # CartPole pays 1 per step: each episode's return is its length.
    np.testing.assert_allclose(d.episode_return, np.bincount(ep))
    # Within an episode, next_obs is the following row's obs (no auto-reset in between).
    same = ep[1:] == ep[:-1]
    np.testing.assert_array_equal(np.asarray(d.next_obs)[:-1][same], np.asarray(d.obs)[1:][same])
    # The scripted expert's rule holds on every recorded row.
    obs = np.asarray(d.obs)
    np.testing.assert_array_equal(d.action, (obs[:, 2] + 0.5 * obs[:, 3] > 0).astype(np.int32))


def test_round_trip(recorded, tmp_path):
    path = str(tmp_path / "d.npz")
    demos.save(path, recorded)
    back = demos.load(path, env="CartPole-v1", spec=_spec("CartPole-v1"))
    assert back.env == "CartPole-v1"
    for name in demos.ARRAYS:
        np.testing.assert_array_equal(getattr(back, name), getattr(recorded, name), name)
        assert np.asarray(getattr(back, name)).dtype == np.asarray(getattr(recorded, name)).dtype
    assert not os.path.exists(str(tmp_path / "d.tmp.npz"))


def test_first_episodes_is_a_prefix(recorded):
    two = demos.first_episodes(recorded, 2)
    assert two.num_episodes == 2 and two.size == int(np.sum(np.asarray(recorded.episode) < 2))
    np.testing.assert_array_equal(two.obs, np.asarray(recorded.obs)[:two.size])
    with pytest.raises(ConfigError, match="at most the 3 episodes"):
        demos.first_episodes(recorded, 4)


def _write(path, recorded, **changes):
    arrays = {name: np.asarray(getattr(recorded, name)) for name in demos.ARRAYS}
    arrays.update(format_version=np.int64(demos.FORMAT_VERSION), env=np.array(recorded.env))
    for k, v in changes.items():
        if v is None:
            arrays.pop(k)
        else:
            arrays[k] = v
    np.savez(path, **arrays)
    return path


def _refusals(d):
    n = d.size
    obs = np.asarray(d.obs)
    ep = np.asarray(d.episode)
    return {
        "version": ({"format_version": np.int64(2)},
                    "format version 2; this jaxrl reads version 1"),
        "no-version": ({"format_version": None}, "no format_version"),
        "missing-array": ({"next_obs": None}, "lacks the array 'next_obs'"),
        "short-action": ({"action": np.asarray(d.action)[:-1]}, "action must have"),
        "obs-vs-next": ({"next_obs": obs[:, :2]}, "next_obs shape"),
        "episode-gap": ({"episode": np.where(ep == 2, 3, ep)}, "episode ids must run"),
        "returns-count": ({"episode_return": np.zeros(2, np.float32)}, "episode ids must run"),
        "unended": ({"terminated": np.zeros(n, bool), "truncated": np.zeros(n, bool)},
                    "every episode must end"),
        "float-episode": ({"episode": ep.astype(np.float32)}, "integer ids"),
    }


@pytest.mark.parametrize("case", [
    "version", "no-version", "missing-array", "short-action", "obs-vs-next", "episode-gap",
    "returns-count", "unended", "float-episode"])
def test_every_malformed_file_is_refused_in_one_line(recorded, tmp_path, case):
    changes, message = _refusals(recorded)[case]
    path = _write(str(tmp_path / f"{case}.npz"), recorded, **changes)
    with pytest.raises(ConfigError, match=message) as err:
        demos.load(path)
    assert "\n" not in str(err.value)


def test_wrong_env_shape_and_actions_are_refused(recorded, tmp_path):
    path = _write(str(tmp_path / "d.npz"), recorded)
    with pytest.raises(ConfigError, match="recorded on 'CartPole-v1', not on env 'Acrobot-v1'"):
        demos.load(path, env="Acrobot-v1")
    with pytest.raises(ConfigError, match=r"observations of shape \(4,\); the env's are \(6,\)"):
        demos.load(path, spec=_spec("Acrobot-v1"))
    with pytest.raises(ConfigError, match="actions of shape"):
        demos.load(path, spec=_spec("Pendulum-v1").__class__(
            obs_shape=(4,), discrete=False, action_shape=(1,)))
    bad = _write(str(tmp_path / "b.npz"), recorded,
                 action=np.full(recorded.size, 2, np.int32))
    with pytest.raises(ConfigError, match=r"actions outside 0..1"):
        demos.load(bad, spec=_spec("CartPole-v1"))
    floats = _write(str(tmp_path / "f.npz"), recorded,
                    action=np.asarray(recorded.action, np.float32))
    with pytest.raises(ConfigError, match="discrete"):
        demos.load(floats, spec=_spec("CartPole-v1"))


def test_missing_and_unreadable_files_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        demos.load(str(tmp_path / "nope.npz"))
    junk = tmp_path / "junk.npz"
    junk.write_text("not a zip")
    with pytest.raises(ConfigError, match="not a readable .npz"):
        demos.load(str(junk))
    with pytest.raises(ConfigError, match="ending in .npz"):
        demos.save(str(tmp_path / "x.txt"), None)


def test_cli_records_a_run_folder_and_refuses_bad_arguments(tmp_path, capsys):
    run = imitation_data.files()["expert"]
    out = str(tmp_path / "d.npz")
    assert cli.main(["demos", run, "--episodes", "2", "--out", out]) == 0
    assert "2 episodes" in capsys.readouterr().out
    d = demos.load(out, env="CartPole-v1", spec=_spec("CartPole-v1"))
    assert d.num_episodes == 2
    # The recorded actions are the run's greedy policy on the recorded observations.
    expert = demos.load_expert(run, REGISTRY)
    keys = jax.random.split(jax.random.key(0), d.size)
    np.testing.assert_array_equal(d.action, jax.vmap(expert.act)(d.obs, keys))
    for argv, message in [
            (["demos", run, "--episodes", "0", "--out", out], "episodes must be a positive"),
            (["demos", run, "--episodes", "2", "--out", "x.txt"], "ending in .npz"),
            (["demos", str(tmp_path), "--episodes", "2", "--out", out], "no config.json"),
            (["demos", run, "--episodes", "2", "--out", out, "--expert-seed", "3"],
             "expert_seed")]:
        assert cli.main(argv) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err


@pytest.mark.slow
def test_cli_sample_records_the_sampling_policy(tmp_path):
    run = imitation_data.files()["expert"]
    greedy, sampled = str(tmp_path / "g.npz"), str(tmp_path / "s.npz")
    assert cli.main(["demos", run, "--episodes", "2", "--out", greedy]) == 0
    assert cli.main(["demos", run, "--episodes", "2", "--out", sampled, "--sample"]) == 0
    g, s = demos.load(greedy), demos.load(sampled)
    assert g.size != s.size or not np.array_equal(g.action, s.action)
