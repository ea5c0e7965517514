# The two commands a newcomer needs (see README.md):
#   make run    set up .venv and launch the app on its default preview engine (faithful)
#   make test   set up .venv with the test tools and run the checks and the test suite
# and, once .venv is set up, the quick check while working:
#   make test-fast   the checks and the tests not marked slow, on two cores
.PHONY: run test test-fast setup setup-dev lint demo

setup:
	bash scripts/setup.sh

setup-dev:
	bash scripts/setup.sh dev

run: setup
	.venv/bin/fbupscale-gui resources/samples

demo: setup
	.venv/bin/fbupscale upscale resources/samples/*.png -o out/demo --engine faithful

lint:
	.venv/bin/ruff check fbupscale_gui tests bench
	.venv/bin/ruff format --check fbupscale_gui tests bench
	.venv/bin/mypy
	.venv/bin/lint-imports

test: setup-dev lint
	QT_QPA_PLATFORM=offscreen .venv/bin/python -m pytest -q

test-fast: lint
	QT_QPA_PLATFORM=offscreen .venv/bin/python -m pytest -q -m "not slow" -n 2
