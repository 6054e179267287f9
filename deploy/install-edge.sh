#!/usr/bin/env bash
# Install or upgrade a stockgate gateway (edge agent) on a Raspberry Pi OS / Debian box:
# the service user, a venv with stockgate[edge], /etc/stockgate/edge.toml from the example,
# the systemd unit (waiting for time sync), udev rules for serial scanners and journald
# settings. Safe to run again: that is how a gateway is upgraded. `--help` for options.
source "$(dirname "${BASH_SOURCE[0]}")/install-common.sh"
parse_args "$@"

# dialout: serial ports that the udev rules below do not cover (e.g. a Pi's own UART).
make_user "m $SERVICE_USER dialout"
install_venv edge
install_config edge
install_unit stockgate-edge.service
install_file "$DEPLOY_DIR/systemd/time-wait-sync-bounded.conf" \
  "$UNIT_DIR/systemd-time-wait-sync.service.d/stockgate.conf"
install_file "$DEPLOY_DIR/systemd/journald-stockgate.conf" \
  "$ROOT/etc/systemd/journald.conf.d/stockgate.conf"
install_file "$DEPLOY_DIR/70-stockgate-scanners.rules" \
  "$ROOT/etc/udev/rules.d/70-stockgate-scanners.rules"
if [ "$LIVE" = yes ]; then
  udevadm control --reload-rules
  udevadm trigger --subsystem-match=tty --action=change
  systemctl restart systemd-journald
fi
activate stockgate-edge.service edge
