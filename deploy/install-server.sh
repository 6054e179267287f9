#!/usr/bin/env bash
# Install or upgrade the stockgate server on a Debian-like host: the service user, a venv
# with stockgate[server], /etc/stockgate/server.toml from the example, the systemd unit
# and journald settings. The broker (Mosquitto, deploy/mosquitto.conf) and PostgreSQL,
# if used, are installed on their own. Safe to run again: that is how the server is
# upgraded (the schema migrates itself at start). `--help` for options.
source "$(dirname "${BASH_SOURCE[0]}")/install-common.sh"
parse_args "$@"

make_user ""
install_venv server
install_config server
install_unit stockgate-server.service
install_file "$DEPLOY_DIR/systemd/journald-stockgate.conf" \
  "$ROOT/etc/systemd/journald.conf.d/stockgate.conf"
if [ "$LIVE" = yes ]; then
  systemctl restart systemd-journald
fi
activate stockgate-server.service server
