#!/usr/bin/env bash
# Debian's kcat, linked against a librdkafka that can authenticate to Kafka 4.
#
# Debian 12's kcat uses the system librdkafka 2.0.2, whose SCRAM client repeats the client
# nonce in its final message; Kafka 4 checks nonces strictly (RFC 5802) and refuses it as
# "invalid credentials" (fixed in librdkafka 2.6.1, confluentinc/librdkafka#4895). When the
# system library is older than that, this runs the same kcat binary with the librdkafka that
# the confluent-kafka wheel in .venv ships. Arguments go to kcat unchanged (use -F FILE for
# credentials: never put a password on a command line).
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
python="${THREATROUTE_PYTHON:-$here/.venv/bin/python}"
kcat="$(command -v kcat)" || { echo "kcat is not installed (Debian: apt-get install kcat)" >&2; exit 127; }
system_version="$("$kcat" -V 2>/dev/null | sed -n 's/.*librdkafka \([0-9.]*\).*/\1/p')"
if [ -n "$system_version" ] && printf '2.6.1\n%s\n' "$system_version" | sort -V -C; then
  exec "$kcat" "$@"   # the system librdkafka is new enough
fi
libs="$("$python" - <<'PY'
import pathlib, confluent_kafka
print(pathlib.Path(confluent_kafka.__file__).resolve().parent.parent / "confluent_kafka.libs")
PY
)"
bundled="$(ls "$libs"/librdkafka-*.so.1 2>/dev/null | head -1)"
[ -n "$bundled" ] || { echo "no librdkafka in $libs to run kcat with" >&2; exit 1; }
shim="${XDG_CACHE_HOME:-$HOME/.cache}/threatroute/kcat-lib"
mkdir -p "$shim"
ln -sf "$bundled" "$shim/librdkafka.so.1"
LD_LIBRARY_PATH="$shim${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" exec "$kcat" "$@"
