# Two commands for a fresh machine: `make demo` and `make test`. Each creates .venv if missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

$(BIN)/jaxrl: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,tensorboard]'
	touch $(BIN)/jaxrl

.PHONY: install demo test test-slow bench clean
install: $(BIN)/jaxrl

demo: $(BIN)/jaxrl  ## PPO on CartPole-v1, 4 vmapped seeds, 5e5 steps each (~1 min on 2 cores)
	$(BIN)/jaxrl train ppo --env CartPole-v1 --num-seeds 4 --total-timesteps 500000 --eval-episodes 16 --out runs/demo-ppo-cartpole --overwrite

test: $(BIN)/jaxrl  ## the default suite (slow learning checks excluded)
	$(BIN)/python -m pytest -n 2 -q

test-slow: $(BIN)/jaxrl  ## learning checks with fixed seeds and honest thresholds
	$(BIN)/python -m pytest -n 2 -q -m slow

bench: $(BIN)/jaxrl
	$(BIN)/python bench/ppo_cartpole.py

clean:
	rm -rf $(VENV) build dist *.egg-info
