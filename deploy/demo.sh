#!/usr/bin/env bash
# `make demo`: start the embedded broker (secure: TLS + SCRAM + ACLs), create topics, build demo
# data, import the example registry (which provisions each recipient's credentials), ingest the
# demo indicators, run the enrichment chain, show what came out, and show one recipient reading
# its own alerts with kcat and being refused another's.
# Needs nothing from ../shared: every input is generated or lives in deploy/.
set -euo pipefail
cd "$(dirname "$0")/.."
tr=.venv/bin/threatroute
run_seconds=${DEMO_RUN_SECONDS:-20}

step() { printf '\n== %s\n' "$*"; }

state=${THREATROUTE_STATE:-.threatroute}
if [ -f "$state/broker/data/meta.properties" ] && [ "$(cat "$state/broker/mode" 2>/dev/null)" != secure ]; then
  # a store from an earlier plaintext demo: the demo data is regenerated below
  echo "replacing the plaintext demo broker in $state/broker with a secure one"
  $tr broker stop >/dev/null || true
  rm -rf "$state/broker"
fi
step "broker (secure)";   $tr broker start --secure
step "topics";            $tr topics create
step "enrichment data";   $tr data build
step "recipients";        $tr recipients import deploy/recipients.example.yaml
$tr recipients list
step "why each demo indicator goes where it goes (threatroute explain)"
$tr explain --ipasn .threatroute/data/ipasn.dat --asnames .threatroute/data/asnames.json \
  --geoip .threatroute/data/demo-city.mmdb --registry deploy/recipients.example.yaml \
  < deploy/demo/indicators.jsonl || [ $? -eq 1 ]   # exit 1: the last demo line is invalid on purpose
step "ingest";            $tr ingest jsonl deploy/demo/indicators.jsonl || [ $? -eq 1 ]  # 1: the invalid line
step "run all stages for ${run_seconds}s"
$tr run all & pid=$!
sleep "$run_seconds"; kill -TERM "$pid"; wait "$pid" || true
step "what examplehost received (threatroute tail examplehost)"
$tr tail examplehost
step "what cert-gb received"
$tr tail cert-gb
step "examplehost acknowledges its first alert (threatroute feedback)"
# read all of tail's output (a `head -1` would break tail's pipe, and pipefail the demo)
first=$($tr tail examplehost --json 2>/dev/null | python3 -c 'import json,sys; print(json.loads(sys.stdin.read().splitlines()[0])["alert_id"])')
$tr feedback "$first" acknowledged --recipient examplehost --note "ticket DEMO-1"

# -- the trust boundary (issue 9): one recipient, its credentials, its topic, and a refusal ------
creds="$state/credentials/examplehost.properties"
kcat=deploy/kcat.sh   # Debian's kcat, with a librdkafka that speaks SCRAM to Kafka 4
step "examplehost's credentials, as \`recipients import\` provisioned them (password masked here)"
ls -l "$creds"
sed 's/^sasl.password=.*/sasl.password=**** (in the file)/' "$creds"
step "examplehost reads its own alerts with kcat and that file"
echo "\$ $kcat -F $creds -C -t alerts.examplehost -e -q"
$kcat -F "$creds" -C -t alerts.examplehost -e -q -f '%k %s\n' 2>&1 | cut -c1-160 | head -3 || true
step "examplehost tries cert-gb's alerts: the broker refuses"
echo "\$ $kcat -F $creds -C -t alerts.cert-gb -e -q"
$kcat -F "$creds" -C -t alerts.cert-gb -e -q 2>&1 | grep -v '^% Reading configuration' | head -2 || true
step "examplehost lists topics: it sees only its own"
$kcat -F "$creds" -L 2>&1 | grep 'topic "' || true
# -- end of the trust boundary block ---------------------------------------------------------------
printf '\nThe broker keeps running, secure (data in %s/broker; the pipeline'"'"'s credentials in\n' "$state"
printf '%s/credentials/pipeline.properties, each recipient'"'"'s beside it). Run the pipeline again with\n' "$state"
printf '  %s run all      (metrics on http://127.0.0.1:9464/metrics)\n' "$tr"
printf 'and stop the broker with: %s broker stop\n' "$tr"
