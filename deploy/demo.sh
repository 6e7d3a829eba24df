#!/usr/bin/env bash
# `make demo`: start the embedded broker, create topics, build demo data, import the example
# registry, ingest the demo indicators, run the enrichment chain, and show what came out.
# Needs nothing from ../shared: every input is generated or lives in deploy/.
set -euo pipefail
cd "$(dirname "$0")/.."
tr=.venv/bin/threatroute
run_seconds=${DEMO_RUN_SECONDS:-20}

step() { printf '\n== %s\n' "$*"; }

step "broker";            $tr broker start
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
first=$($tr tail examplehost --json 2>/dev/null | head -1 | python3 -c 'import json,sys; print(json.load(sys.stdin)["alert_id"])')
$tr feedback "$first" acknowledged --recipient examplehost --note "ticket DEMO-1"
step "the same topic as a plain Kafka client sees it (kcat)"
if command -v kcat >/dev/null; then
  kcat -C -b 127.0.0.1:9092 -t alerts.examplehost -e -q -f '%k %s\n' 2>/dev/null | head -2 || true
fi
printf '\nThe broker keeps running (data in .threatroute/broker). Run the pipeline again with\n'
printf '  %s run all      (metrics on http://127.0.0.1:9464/metrics)\n' "$tr"
printf 'and stop the broker with: %s broker stop\n' "$tr"
