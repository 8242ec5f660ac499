#!/usr/bin/env bash
# ./run_local.sh [--database-url URL]   run the bank example (examples/bank.py) on the DirectRunner's
#                                       FnApiRunner, writing to SQLite local.db, or to PostgreSQL when
#                                       PGHOST is set or --database-url is given
# ./run_local.sh test [pytest args]     create .venv, install .[test] and run the whole test suite
set -euo pipefail
cd "$(dirname "$0")"

say() { echo "run_local.sh: $*" >&2; }

venv=.venv
if [ ! -x "$venv/bin/python" ]; then
  say "creating the virtual environment $venv (first run only)"
  python3 -m venv "$venv"
fi
stamp="$venv/.installed"
if [ ! -f "$stamp" ] || [ setup.py -nt "$stamp" ]; then
  say "installing the project and its dependencies (Apache Beam, SQLAlchemy, drivers) into $venv;"
  say "this takes a minute or two the first time, and again only when setup.py changes"
  say "  1/2 upgrading pip"
  "$venv/bin/python" -m pip install --quiet --upgrade pip
  say "  2/2 installing .[test]"
  "$venv/bin/python" -m pip install --quiet -e ".[test]"
  touch "$stamp"
  say "installed"
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
    if [ "$database_url" = "sqlite:///local.db" ]; then
      # Each run starts from an empty example database: running twice must not append twice.
      [ -f local.db ] && say "removing the previous local.db: each run starts from a fresh example database"
      rm -f local.db
    else
      say "writing to $database_url: its tables are created if missing, and appended to if not"
    fi
    input=data/bank_updates.jsonl
    if [ ! -f "$input" ]; then
      say "generating sample updates into $input"
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
