"""Tuned settings as data: every entry validates, a bad entry names its file and key, the
CLI applies an entry (flags override it, `--no-tuned` ignores it, `config.json` records it)
and the Python API builds the same settings."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from jaxrl import cli, tuned
from jaxrl.agents import REGISTRY, ppo
from jaxrl.config import ConfigError


def test_every_entry_loads_and_validates():
    entries = tuned.check_all(REGISTRY)
    assert len(entries) >= 20
    pairs = {(e.agent, e.env) for e in entries}
    assert ("ppo", "Pendulum-v1") in pairs and ("td3", "MountainCarContinuous-v0") in pairs
    for e in entries:
        assert e.source, e.where
        config, _ = REGISTRY[e.agent].settings(e.env)
        assert config.env == e.env
        for key, value in e.config.items():
            got = getattr(config, key)
            assert got == (tuple(value) if isinstance(value, list) else value), (e.where, key)


BAD = [
    ("unknown-config-field", '[ppo."CartPole-v1"]\nconfig = { num_env = 4 }\n',
     r'bad.toml \[ppo."CartPole-v1"\]: config field .num_env. is unknown'),
    ("invalid-value", '[ppo."CartPole-v1"]\nconfig = { num_envs = 0 }\n',
     r'bad.toml \[ppo."CartPole-v1"\]: num_envs'),
    ("invalid-hparam", '[ppo."CartPole-v1"]\nhparams = { gamma = 2.0 }\n',
     r'bad.toml \[ppo."CartPole-v1"\]: .*gamma'),
    ("unknown-agent", '[ppoo."CartPole-v1"]\n', r'bad.toml \[ppoo."CartPole-v1"\]: agent'),
    ("unknown-env", '[ppo."CartPol-v1"]\n', r'bad.toml \[ppo."CartPol-v1"\]: env'),
    ("unknown-key", '[ppo."CartPole-v1"]\nconfg = { num_envs = 4 }\n',
     r'bad.toml \[ppo."CartPole-v1"\]: key .confg.'),
    ("env-in-config", '[ppo."CartPole-v1"]\nconfig = { env = "Acrobot-v1" }\n',
     r"may not set env"),
    ("not-toml", '[ppo."CartPole-v1"\n', r"bad.toml is unreadable"),
]


@pytest.mark.parametrize("text, match", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_a_bad_entry_fails_naming_the_file_and_key(tmp_path, text, match):
    (tmp_path / "bad.toml").write_text(text)
    with pytest.raises(ConfigError, match=match):
        tuned.check_all(REGISTRY, directory=str(tmp_path))


def test_a_pair_in_two_files_is_refused(tmp_path):
    (tmp_path / "a.toml").write_text('[ppo."CartPole-v1"]\n')
    (tmp_path / "b.toml").write_text('[ppo."CartPole-v1"]\n')
    with pytest.raises(ConfigError, match=r'b.toml \[ppo."CartPole-v1"\] is also in a.toml'):
        tuned.table(str(tmp_path))


def test_an_override_must_be_a_field():
    with pytest.raises(ConfigError, match="'num_env' is not a field"):
        ppo.AGENT.settings("Pendulum-v1", num_env=2)


SMALL = ["--total-timesteps", "256", "--num-envs", "2", "--rollout-len", "64",
         "--num-minibatches", "2", "--no-progress"]


def _train(tmp_path, capsys, name, *extra):
    out = str(tmp_path / name)
    assert cli.main(["train", "ppo", "--env", "Pendulum-v1", *SMALL, "--out", out,
                     "--learning-rate", "3e-4", *extra]) == 0
    with open(os.path.join(out, "config.json")) as f:
        return json.load(f), capsys.readouterr().out


def test_the_cli_applies_tuned_settings_and_flags_override_them(tmp_path, capsys):
    data, out = _train(tmp_path, capsys, "tuned")
    assert 'tuned settings: ppo.toml [ppo."Pendulum-v1"]' in out
    assert data["tuned"] == 'ppo.toml [ppo."Pendulum-v1"]'
    config, hparams = data["config"], data["hparams"]
    assert config["num_epochs"] == 10 and config["clip_value_loss"] is False  # tuned
    assert config["num_envs"] == 2 and config["num_minibatches"] == 2  # flags
    np.testing.assert_allclose(hparams["gamma"], 0.9)  # tuned
    np.testing.assert_allclose(hparams["learning_rate"], 3e-4)  # flag
    # The Python API gives the same settings.
    api_config, api_hparams = ppo.AGENT.settings(
        "Pendulum-v1", total_timesteps=256, num_envs=2, rollout_len=64, num_minibatches=2,
        learning_rate=3e-4)
    assert json.loads(json.dumps(__import__("dataclasses").asdict(api_config),
                                 default=list)) == config
    np.testing.assert_allclose(api_hparams.gamma, hparams["gamma"])

    data, out = _train(tmp_path, capsys, "plain", "--no-tuned")
    assert "tuned settings" not in out and data["tuned"] is None
    defaults = ppo.Config()
    assert data["config"]["num_epochs"] == defaults.num_epochs
    assert data["config"]["clip_value_loss"] == defaults.clip_value_loss
    np.testing.assert_allclose(data["hparams"]["gamma"], float(ppo.HParams.create().gamma))


def test_an_env_without_an_entry_uses_the_defaults():
    config, _ = ppo.AGENT.settings("MountainCar-v0")
    assert config == ppo.Config(env="MountainCar-v0")
