# shellcheck shell=bash
# What install-edge.sh and install-server.sh share; sourced, never run.
#
# Layout (under --prefix ROOT, "/" for a real install):
#   ROOT/opt/stockgate/venv                    the virtualenv with stockgate[edge|server]
#   ROOT/etc/stockgate/<role>.toml             the config (created once from the example)
#   ROOT/etc/stockgate/<role>.example.toml     the example, refreshed on every run
#   ROOT/etc/systemd/system/stockgate-<role>.service
#   ROOT/etc/sysusers.d/stockgate.conf         the service user, made by systemd-sysusers
#   /var/lib/stockgate                         the state (systemd's StateDirectory=)
# Paths inside the installed files point under ROOT too, so a temporary root is a
# complete, checkable install (`systemd-analyze verify` resolves ExecStart there).
# Every step checks what is there first: running it again is an upgrade.

set -euo pipefail

DEPLOY_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT=/
SOURCE=""
PIP_ARGS=""
PYTHON="${PYTHON:-python3}"
START=auto
SERVICE_USER=stockgate

usage() {
  cat <<EOF
usage: $0 [--prefix DIR] [--wheel FILE | --from SPEC] [--pip-args "ARGS"] [--python PY]
          [--start | --no-start]

  --prefix DIR     install under DIR instead of / (a temporary root for checking;
                   users, udev and systemd are then written, not activated)
  --wheel FILE     install this stockgate wheel (a release file, or one built with
                   \`pip wheel --no-deps .\`)
  --from SPEC      pip requirement to install from instead (default: stockgate, the
                   newest release); e.g. "stockgate==0.2.0"
  --pip-args ARGS  extra pip arguments (e.g. "--no-index --find-links /srv/wheels")
  --python PY      the Python that makes the venv (default python3; 3.11 or newer)
  --start          start (or restart) the service after installing
  --no-start       only enable it; the default starts it when its config is not the
                   untouched example, and restarts it on an upgrade if it was running
EOF
}

parse_args() {
  while [ $# -gt 0 ]; do
    case "$1" in
      --prefix) ROOT="${2:?--prefix needs a directory}"; shift 2 ;;
      --wheel) SOURCE="$(cd "$(dirname "${2:?--wheel needs a file}")" && pwd)/$(basename "$2")"; shift 2 ;;
      --from) SOURCE="${2:?--from needs a requirement}"; shift 2 ;;
      --pip-args) PIP_ARGS="${2?--pip-args needs a value}"; shift 2 ;;
      --python) PYTHON="${2:?--python needs an interpreter}"; shift 2 ;;
      --start) START=yes; shift ;;
      --no-start) START=no; shift ;;
      -h|--help) usage; exit 0 ;;
      *) echo "error: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
  done
  ROOT="${ROOT%/}"
  if [ -n "$ROOT" ]; then
    mkdir -p "$ROOT"
    ROOT="$(cd "$ROOT" && pwd)"
    [ "$ROOT" = / ] && ROOT=""
  fi
  OPT="$ROOT/opt/stockgate"
  VENV="$OPT/venv"
  ETC="$ROOT/etc/stockgate"
  UNIT_DIR="$ROOT/etc/systemd/system"
  LIVE=no
  if [ -z "$ROOT" ] && [ -d /run/systemd/system ]; then
    LIVE=yes
  fi
  if [ -z "$ROOT" ] && [ "$(id -u)" != 0 ]; then
    echo "error: installing into / needs root (or use --prefix DIR)" >&2
    exit 1
  fi
}

say() { printf '==> %s\n' "$*"; }

check_python() {
  "$PYTHON" - <<'EOF' || { echo "error: $PYTHON is older than 3.11" >&2; exit 1; }
import sys
sys.exit(0 if sys.version_info >= (3, 11) else 1)
EOF
}

# The service user and group, declared for systemd-sysusers (idempotent by design).
make_user() {
  local groups_line="$1"
  install -d -m 0755 "$ROOT/etc/sysusers.d"
  {
    echo "# stockgate's service user (written by deploy/install-*.sh)"
    echo "u $SERVICE_USER - \"stockgate service\" /var/lib/stockgate /usr/sbin/nologin"
    [ -n "$groups_line" ] && echo "$groups_line"
  } >"$ROOT/etc/sysusers.d/stockgate.conf"
  if [ -n "$ROOT" ]; then
    systemd-sysusers --root="$ROOT" "$ROOT/etc/sysusers.d/stockgate.conf"
  else
    systemd-sysusers /etc/sysusers.d/stockgate.conf
  fi
  say "service user $SERVICE_USER"
}

# The venv, made once, then stockgate[EXTRA] installed or upgraded in it.
install_venv() {
  local extra="$1" requirement
  check_python
  if [ ! -x "$VENV/bin/python" ]; then
    install -d -m 0755 "$OPT"
    "$PYTHON" -m venv "$VENV"
    say "venv $VENV"
  fi
  requirement="${SOURCE:-stockgate}"
  case "$requirement" in
    *.whl) requirement="stockgate[$extra] @ file://$requirement" ;;
    stockgate*) requirement="stockgate[$extra]${requirement#stockgate}" ;;
    *) echo "error: --from takes a stockgate requirement, got: $requirement" >&2; exit 2 ;;
  esac
  # shellcheck disable=SC2086  # PIP_ARGS is a list of words on purpose
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade \
    $PIP_ARGS "$requirement"
  say "installed $("$VENV/bin/stockgate" --version)"
}

# The example config (always refreshed) and the config (only made when missing).
install_config() {
  local role="$1"
  install -d -m 0750 "$ETC"
  install -m 0644 "$DEPLOY_DIR/$role.example.toml" "$ETC/$role.example.toml"
  if [ ! -e "$ETC/$role.toml" ]; then
    install -m 0640 "$DEPLOY_DIR/$role.example.toml" "$ETC/$role.toml"
    say "config $ETC/$role.toml (from the example: edit it)"
  else
    say "config $ETC/$role.toml kept"
  fi
  if [ -z "$ROOT" ]; then
    chgrp "$SERVICE_USER" "$ETC" "$ETC/$role.toml"
  fi
}

# A unit from deploy/, with its /opt/stockgate and /etc/stockgate paths under ROOT.
install_unit() {
  local name="$1"
  install -d -m 0755 "$UNIT_DIR"
  sed -e "s|/opt/stockgate/|$OPT/|g" -e "s|/etc/stockgate/|$ETC/|g" \
    "$DEPLOY_DIR/$name" >"$UNIT_DIR/$name.tmp"
  chmod 0644 "$UNIT_DIR/$name.tmp"
  mv "$UNIT_DIR/$name.tmp" "$UNIT_DIR/$name"
  say "unit $UNIT_DIR/$name"
}

# A drop-in or config file copied as is.
install_file() {
  local from="$1" to="$2"
  install -d -m 0755 "$(dirname "$to")"
  install -m 0644 "$from" "$to"
  say "file $to"
}

# Enable the unit; start or restart it as --start/--no-start and the config say.
activate() {
  local name="$1" role="$2" untouched=no
  cmp -s "$DEPLOY_DIR/$role.example.toml" "$ETC/$role.toml" && untouched=yes
  if [ "$LIVE" = no ]; then
    # What `systemctl enable` does, made by hand: a temporary root has no systemd.
    install -d -m 0755 "$UNIT_DIR/multi-user.target.wants"
    ln -sfn "../$name" "$UNIT_DIR/multi-user.target.wants/$name"
    say "enabled $name (not started: not installing into the running system)"
    return
  fi
  systemctl daemon-reload
  systemctl enable "$name" >/dev/null
  if [ "$START" = yes ] || { [ "$START" = auto ] && [ "$untouched" = no ]; }; then
    systemctl restart "$name"
    say "started $name"
  elif [ "$START" = auto ]; then
    say "enabled $name; edit $ETC/$role.toml, then: systemctl start $name"
  else
    say "enabled $name (not started)"
  fi
}
