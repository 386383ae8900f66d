#!/usr/bin/env bash
# damon-bpf setup: system packages, kernel headers for BCC, and the project's virtual environment.
#
# Idempotent and fast when everything is already in place. Run as root on a fresh Debian/Ubuntu machine:
#   scripts/setup.sh                 # or: make setup (from a user account: sudo make setup)
# Environment: VENV (default .venv), DAMON_BPF_SKIP_APT=1 to never call apt-get.
set -euo pipefail

cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PY=/usr/bin/python3
KREL=$(uname -r)

say() { printf 'setup: %s\n' "$*"; }
warn() { printf 'setup: warning: %s\n' "$*" >&2; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

need_root() {
	[ "$(id -u)" -eq 0 ] || die "installing system packages needs root: run 'sudo make setup' (missing: $*)"
}

apt_updated=0
apt_install() {
	[ "${DAMON_BPF_SKIP_APT:-0}" = 1 ] && die "missing system packages ($*) and DAMON_BPF_SKIP_APT=1"
	command -v apt-get >/dev/null || die "no apt-get: install these packages by hand: $*"
	need_root "$@"
	if [ $apt_updated = 0 ]; then
		say "apt-get update"
		apt-get update -qq || warn "apt-get update failed; trying the install anyway"
		apt_updated=1
	fi
	say "installing $*"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# 1. System packages. BCC comes from the distribution (python3-bpfcc), built for /usr/bin/python3; bpftool
# cross-checks the BTF reader in the tests.
pkgs=()
pkg_missing() { ! dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }
# prometheus: the server and promtool the export tests scrape and lint with (its own service is not left running).
# binutils: readelf, the oracle of the ELF reader's tests (report objects).
for p in python3-bpfcc bpfcc-tools python3-venv python3-numpy linux-perf file bpftool prometheus binutils; do
	pkg_missing "$p" && pkgs+=("$p")
done
if [ ${#pkgs[@]} -gt 0 ]; then
	apt_install "${pkgs[@]}"
	case " ${pkgs[*]} " in *" prometheus "*)
		# the package's postinst enables and starts a server on :9090; the tests start their own
		if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
			systemctl disable --now prometheus >/dev/null 2>&1 || true
		elif command -v service >/dev/null; then
			service prometheus stop >/dev/null 2>&1 || true
		elif [ -x /etc/init.d/prometheus ]; then
			/etc/init.d/prometheus stop >/dev/null 2>&1 || true
		fi ;;
	esac
fi

# 2. Kernel headers for BCC. Prefer the exact linux-headers-$(uname -r); fall back to the distribution's
# generic headers linked into /lib/modules/$KREL/{build,source}.
headers_ok() {
	[ -e "/lib/modules/$KREL/build/Makefile" ] &&
		{ [ -e "/lib/modules/$KREL/build/include/linux/kconfig.h" ] ||
		  [ -e "/lib/modules/$KREL/source/include/linux/kconfig.h" ]; }
}
if ! headers_ok && [ ! -e /sys/kernel/kheaders.tar.xz ]; then
	if command -v apt-get >/dev/null && apt-cache show "linux-headers-$KREL" >/dev/null 2>&1; then
		apt_install "linux-headers-$KREL"
	else
		if ! ls -d /usr/src/linux-headers-*-common >/dev/null 2>&1 || pkg_missing linux-headers-amd64; then
			case "$(dpkg --print-architecture 2>/dev/null)" in
				amd64) apt_install linux-headers-amd64 ;;
				arm64) apt_install linux-headers-arm64 ;;
				*) die "no kernel headers for $KREL; install your distribution's kernel headers" ;;
			esac
		fi
		arch_dir=$(ls -d /usr/src/linux-headers-*-"$(dpkg --print-architecture)" 2>/dev/null | sort -V | tail -n1)
		common_dir=$(ls -d /usr/src/linux-headers-*-common 2>/dev/null | sort -V | tail -n1)
		[ -n "$arch_dir" ] && [ -n "$common_dir" ] || die "generic kernel headers not found under /usr/src"
		need_root "kernel header links"
		mkdir -p "/lib/modules/$KREL"
		ln -sfn "$arch_dir" "/lib/modules/$KREL/build"
		ln -sfn "$common_dir" "/lib/modules/$KREL/source"
		warn "no linux-headers-$KREL package exists; linked the generic $(basename "$arch_dir") headers" \
			"into /lib/modules/$KREL/{build,source}. BCC programs compile against them; struct layouts" \
			"that changed since then are not used by damon-bpf (it reads tracepoint and perf-event data only)."
	fi
fi

# 3. The virtual environment, from the interpreter python3-bpfcc was built for, seeing its site-packages.
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import sys; sys.exit(sys.base_prefix != "/usr")' 2>/dev/null; then
	say "creating $VENV from $PY (--system-site-packages, so bcc is importable)"
	rm -rf "$VENV"
	"$PY" -m venv --system-site-packages "$VENV"
fi
stamp="$VENV/.damon-bpf-installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
	say "installing damon-bpf and its test extras into $VENV"
	"$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
	log=$(mktemp)
	if ! "$VENV/bin/python" -m pip install -q -e '.[test]' >"$log" 2>&1; then
		cat "$log" >&2; rm -f "$log"; die "pip install failed (output above)"
	fi
	rm -f "$log"
	touch "$stamp"
fi
"$VENV/bin/python" -c 'import bcc' 2>/dev/null || warn "bcc does not import in $VENV: BPF commands will not work"
say "ready: $VENV/bin/damon-bpf"
