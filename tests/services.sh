#!/usr/bin/env bash
# tests/services.sh: the servers and files the test suite needs, installed and started once.
#
#   PostgreSQL  127.0.0.1:5432, role `root` (superuser, trust auth over TCP from 127.0.0.1), database `test`
#   MariaDB     127.0.0.1:3306, user `root` with an empty password, database `test`
#   Prism       ~/go/bin/prism, Beam's Go runner for tests/test_engines.py (built with `go install`;
#               the Python SDK would download it from GitHub at run time instead)
#
# Idempotent: what is installed is not installed again, what runs is not restarted. Needs root
# (apt-get) for the first install; run it before `./run_local.sh test`. Each test run then makes
# databases of its own on these servers and drops them at the end (tests/conftest.py).
set -euo pipefail

log() { printf 'services: %s\n' "$*" >&2; }

apt_install() {
  local missing=()
  for package in "$@"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing ${missing[*]} (apt-get)"
  if [ -z "${SERVICES_APT_UPDATED:-}" ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    SERVICES_APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {
  for _ in $(seq 1 60); do port_open "$1" && return 0; sleep 0.5; done
  log "nothing listens on 127.0.0.1:$1 after 30 s"; return 1
}

postgres() {
  apt_install postgresql
  local version cluster=main
  version=$(ls /usr/lib/postgresql | sort -n | tail -n 1)
  if ! pg_lsclusters -h | awk '{print $1, $2}' | grep -qx "$version $cluster"; then
    log "creating PostgreSQL $version cluster '$cluster'"
    pg_createcluster "$version" "$cluster" --port 5432 >/dev/null
  fi
  local hba="/etc/postgresql/$version/$cluster/pg_hba.conf"
  if ! grep -q '^host all root 127.0.0.1/32 trust' "$hba"; then
    # First match wins in pg_hba.conf: the test role's line goes on top.
    sed -i '1i host all root 127.0.0.1/32 trust\nhost all root ::1/128 trust' "$hba"
    pg_ctlcluster "$version" "$cluster" reload 2>/dev/null || true
  fi
  if ! port_open 5432; then
    log "starting PostgreSQL $version"
    pg_ctlcluster "$version" "$cluster" start
    wait_port 5432
  fi
  su postgres -c "psql -qtAc \"SELECT 1 FROM pg_roles WHERE rolname = 'root'\"" | grep -q 1 \
    || su postgres -c "psql -qc 'CREATE ROLE root SUPERUSER LOGIN'"
  su postgres -c "psql -qtAc \"SELECT 1 FROM pg_database WHERE datname = 'test'\"" | grep -q 1 \
    || su postgres -c "psql -qc 'CREATE DATABASE test OWNER root'"
}

mariadb() {
  apt_install mariadb-server mariadb-client
  if ! port_open 3306; then
    log "starting MariaDB"
    mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
    # mysqld_safe daemonises itself and restarts the server if it dies; started with setsid so it
    # outlives the shell that started it.
    setsid mysqld_safe --bind-address=127.0.0.1 --port=3306 >/dev/null 2>&1 < /dev/null &
    wait_port 3306
  fi
  # Debian's root authenticates by unix socket only; the tests connect over TCP with no password.
  mysql --protocol=socket -uroot <<'SQL'
CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY '';
GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;
ALTER USER 'root'@'localhost' IDENTIFIED VIA unix_socket OR mysql_native_password USING PASSWORD('');
CREATE DATABASE IF NOT EXISTS test;
SQL
}

prism() {
  local binary="${HOME}/go/bin/prism" go_bin version
  [ -x "$binary" ] && return 0
  go_bin=$(command -v go || echo /usr/local/go/bin/go)
  if [ ! -x "$go_bin" ]; then
    log "no Go toolchain: Prism not installed (tests/test_engines.py::test_prism skips, or fails with CI=true)"
    return 0
  fi
  # The runner matching the SDK: the project's environment's Beam if it exists yet, else the lowest allowed.
  version=$(.venv/bin/python -c 'import apache_beam; print(apache_beam.__version__)' 2>/dev/null || echo 2.77.0)
  log "building Prism v$version (go install, ~1 min)"
  "$go_bin" install "github.com/apache/beam/sdks/v2/go/cmd/prism@v$version"
}

case "${1:-all}" in
  postgres) postgres ;;
  mariadb) mariadb ;;
  prism) prism ;;
  all) postgres; mariadb; prism ;;
  *) echo "usage: tests/services.sh [all|postgres|mariadb|prism]" >&2; exit 2 ;;
esac
