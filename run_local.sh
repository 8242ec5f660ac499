#!/usr/bin/env bash
# ./run_local.sh [--database-url URL]   run the bank example (examples/bank.py) on the DirectRunner's
#                                       FnApiRunner, writing to SQLite local.db, or to PostgreSQL when
#                                       PGHOST is set or --database-url is given
# ./run_local.sh test [pytest args]     create .venv, install .[test] and run the whole test suite
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
  run|--database-url)
    [ "${1:-}" = run ] && shift
    database_url="sqlite:///local.db"
    if [ -n "${PGHOST:-}" ]; then
      database_url="postgresql+psycopg2://${PGUSER:-$USER}@${PGHOST}:${PGPORT:-5432}/${PGDATABASE:-postgres}"
    fi
    if [ "${1:-}" = "--database-url" ]; then
      database_url="$2"
      shift 2
    fi
    input=data/bank_updates.jsonl
    if [ ! -f "$input" ]; then
      mkdir -p data
      "$venv/bin/python" -m pipelines generate --definitions examples/bank.py --entities 1000 --out "$input"
    fi
    exec "$venv/bin/python" -m pipelines run --definitions examples/bank.py --input "$input" \
      --database-url "$database_url" --create-tables --show-rows 5 "$@"
    ;;
  *)
    echo "usage: ./run_local.sh [run] [--database-url URL] | test [pytest args]" >&2
    exit 2
    ;;
esac
