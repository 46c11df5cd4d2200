# Fresh machine: `make demo` and `make test` set everything up themselves.
VENV ?= .venv
PYTHON ?= python3
# The CPU build of torch; on a CUDA machine override, e.g. `make install TORCH_SPEC="torch==2.13.0"`
# with the CUDA index configured in pip.
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test lint typecheck pytest demo redis deploy-tools clean bench

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

redis:
	@bash scripts/ensure-redis.sh

# promtool and prometheus (tests of the alert rules and of a real scrape) and docker-compose 1.29
# (validates docker-compose.yml) from Debian's packages
deploy-tools:
	@bash scripts/ensure-deploy-tools.sh

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

pytest: install redis deploy-tools
	$(BIN)/pytest -q

test: lint typecheck pytest

demo: install
	$(BIN)/ldensf demo --bundle models/bundles/sw --out demo_out/service
	$(BIN)/ldensf demo --bundle models/bundles/ssw --out demo_out/lainr --steps 40
	$(BIN)/ldensf data generate shallow-water --n-traj 4 --n-steps 400 --workers 1 --out demo_out/sw_small.zarr --overwrite
	$(BIN)/ldensf data validate demo_out/sw_small.zarr
	$(BIN)/ldensf data show demo_out/sw_small.zarr --out demo_out/sw_small.png
	$(BIN)/ldensf experiment l96 --method letkf --cycles 400 --burn-in 100 --plot demo_out/l96_letkf.png
	$(BIN)/ldensf experiment l96 --preset ensf-arctan --method ensf --cycles 150 --burn-in 50 --plot demo_out/l96_ensf.png
	@echo "demo: snapshots in demo_out/sw_small.png; Lorenz-96 assimilation in demo_out/l96_letkf.png and demo_out/l96_ensf.png; service demo in demo_out/service/; LAINR (spherical shallow water, changing observation points) in demo_out/lainr/"

bench: install
	$(BIN)/ldensf bench sim
	$(BIN)/ldensf bench filters

clean:
	rm -rf $(VENV) demo_out .pytest_cache .mypy_cache .ruff_cache
