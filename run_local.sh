#!/usr/bin/env bash
# ./run_local.sh        run the bank example locally
# ./run_local.sh test   create .venv, install .[test] and run the whole test suite
set -euo pipefail
cd "$(dirname "$0")"

venv=.venv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
stamp="$venv/.installed"
if [ ! -f "$stamp" ] || [ setup.py -nt "$stamp" ]; then
  "$venv/bin/python" -m pip install --quiet --upgrade pip
  "$venv/bin/python" -m pip install --quiet -e ".[test]"
  touch "$stamp"
fi

case "${1:-run}" in
  test)
    shift || true
    exec "$venv/bin/python" -m pytest -q "$@"
    ;;
  run)
    exec "$venv/bin/python" -m pipelines explain --definitions examples/bank.py
    ;;
  *)
    echo "usage: ./run_local.sh [run|test [pytest args]]" >&2
    exit 2
    ;;
esac
