"""Tuned settings per (agent, environment), kept as data.

One TOML file per agent family in `jaxrl/data/tuned/` (`ppo.toml` holds `ppo` and
`ppo-kl`); an entry is keyed by agent name and environment id and holds `Config` values
(including `total_timesteps`, the budget it was tuned for), `HParams` values and a `source`
saying where it comes from:

    [ppo."Pendulum-v1"]
    source = "tuned here; learning check tests/agents/test_ppo_learning.py"
    [ppo."Pendulum-v1".config]
    total_timesteps = 1_000_000
    [ppo."Pendulum-v1".hparams]
    gamma = 0.9

`jaxrl train AGENT --env ENV` and `Agent.settings(env)` start from the entry when there is
one; flags (keyword arguments) override it; `--no-tuned` (`tuned=False`) starts from the
plain defaults. The learning checks read the same files, so they and the CLI agree.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import tomllib
from typing import Any, NamedTuple

from jaxrl.config import ConfigError

TUNED_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "tuned")


class Entry(NamedTuple):
    """One tuned setting: its file, agent, env, values and source."""

    path: str
    agent: str
    env: str
    config: dict
    hparams: dict
    source: str

    @property
    def where(self) -> str:
        """`file [agent."env"]`, how errors and the CLI name the entry."""
        return f"{os.path.basename(self.path)} [{self.agent}.\"{self.env}\"]"


@functools.cache
def table(directory: str = TUNED_DIR) -> dict[tuple[str, str], Entry]:
    """Every entry of every `*.toml` in `directory`, by `(agent, env)`.

    Raises:
      ConfigError: a file is not valid TOML, an entry has keys other than `source`,
        `config` and `hparams`, or a pair appears twice; the message names file and key.
    """
    entries: dict[tuple[str, str], Entry] = {}
    for name in sorted(os.listdir(directory)):
        if not name.endswith(".toml"):
            continue
        path = os.path.join(directory, name)
        try:
            with open(path, "rb") as f:
                data = tomllib.load(f)
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise ConfigError(f"{path} is unreadable ({e})") from None
        for agent, by_env in data.items():
            for env, values in by_env.items():
                entry = Entry(path, agent, env, dict(values.get("config", {})),
                              dict(values.get("hparams", {})), str(values.get("source", "")))
                unknown = sorted(set(values) - {"source", "config", "hparams"})
                if unknown:
                    raise ConfigError(f"{entry.where}: key {unknown[0]!r} is unknown; "
                                      "allowed: source, config, hparams")
                if (agent, env) in entries:
                    raise ConfigError(f"{entry.where} is also in "
                                      f"{entries[agent, env].where}")
                entries[agent, env] = entry
    return entries


def lookup(agent: str, env: str, directory: str = TUNED_DIR) -> Entry | None:
    """The entry for `agent` on `env`, or None."""
    return table(directory).get((agent, env))


def settings(agent: Any, env: str | None = None, *, tuned: bool = True,
             directory: str = TUNED_DIR, **overrides: Any) -> tuple[Any, Any, Entry | None]:
    """`(config, hparams, entry)` for `agent` on `env` (None: its `Config`'s default env).

    Values come from the tuned entry (if `tuned` and one exists), then from `overrides`,
    each a field of the agent's `Config` or `HParams`.

    Raises:
      ConfigError: an override names no field of either; an entry's value is invalid
        (the message names the entry).
    """
    config_fields = {f.name: f for f in dataclasses.fields(agent.Config)}
    hparam_fields = {f.name for f in dataclasses.fields(agent.HParams)}
    unknown = sorted(set(overrides) - set(config_fields) - hparam_fields)
    if unknown:
        raise ConfigError(f"{unknown[0]!r} is not a field of {agent.name}'s Config or "
                          f"HParams")
    env = config_fields["env"].default if env is None else env
    entry = lookup(agent.name, env, directory) if tuned else None
    config_values = {**(entry.config if entry else {}),
                     **{k: v for k, v in overrides.items() if k in config_fields}, "env": env}
    hparam_values = {**(entry.hparams if entry else {}),
                     **{k: v for k, v in overrides.items() if k in hparam_fields}}
    config_values = {k: tuple(v) if isinstance(v, list) else v
                     for k, v in config_values.items()}
    try:
        return (agent.Config(**config_values), agent.HParams.create(**hparam_values), entry)
    except (ConfigError, TypeError) as e:
        if entry is None:
            raise
        raise ConfigError(f"tuned settings {entry.where}: {e}") from None


def check_all(agents: dict[str, Any], directory: str = TUNED_DIR) -> list[Entry]:
    """Build every entry's `Config` and `HParams`; return the entries.

    Raises:
      ConfigError: an entry names an unknown agent or env, a field that does not exist,
        or an invalid value; the message names the file and the entry.
    """
    from jaxrl import envs

    entries = list(table(directory).values())
    for entry in entries:
        if entry.agent not in agents:
            raise ConfigError(f"{entry.where}: agent {entry.agent!r} is unknown; allowed: "
                              f"{', '.join(agents)}")
        try:
            envs.check_env_id(entry.env)
        except ConfigError as e:
            raise ConfigError(f"{entry.where}: {e}") from None
        agent = agents[entry.agent]
        if "env" in entry.config:
            raise ConfigError(f"{entry.where}: config may not set env (the entry's key is)")
        for part, cls in (("config", agent.Config), ("hparams", agent.HParams)):
            names = {f.name for f in dataclasses.fields(cls)}
            bad = sorted(set(getattr(entry, part)) - names)
            if bad:
                raise ConfigError(f"{entry.where}: {part} field {bad[0]!r} is unknown; "
                                  f"allowed: {', '.join(sorted(names))}")
        settings(agent, entry.env, directory=directory)
    return entries
