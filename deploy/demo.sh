#!/usr/bin/env bash
# `make demo`: start the embedded broker (secure: TLS + SCRAM + ACLs), create topics, build demo
# data, import the example registry (which provisions each recipient's credentials), ingest the
# demo indicators, run the enrichment chain, show what came out, and show one recipient reading
# its own alerts with kcat and being refused another's. Then the feedback story: a world of 50
# recipients whose answers change what the pipeline sends (suppression, reroute, escalation,
# feed trust), ending with a per-recipient table.
# Needs nothing from ../shared: every input is generated or lives in deploy/.
# Each run starts from an empty broker, so the story's figures are its own.
set -euo pipefail
cd "$(dirname "$0")/.."
tr=.venv/bin/threatroute
run_seconds=${DEMO_RUN_SECONDS:-20}

step() { printf '\n== %s\n' "$*"; }

state=${THREATROUTE_STATE:-.threatroute}
if [ -f "$state/broker/data/meta.properties" ]; then
  # a store from an earlier demo (plaintext or secure): the demo data is regenerated below, and
  # the story's counts (dedup, feedback, feed trust) must not carry over from the last run
  echo "starting the demo from an empty broker (replacing $state/broker)"
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

# -- the feedback story (issue 10): 50 recipients answer, and the pipeline reacts -----------------
world="$state/world"
tw() { $tr --config "$world/threatroute.toml" "$@"; }   # the world's data and short times
story_wait=${DEMO_STORY_SECONDS:-12}
step "the story: 48 hosters, their upstream ISP and the national CERT (threatroute demo world)"
$tr demo world --out "$world"
tw recipients import "$world/registry.yaml" | grep -v '^written\|^created\|^provisioned' || true
tw run all >"$world/run.log" 2>&1 & story=$!
trap 'kill -TERM "$story" 2>/dev/null || true' EXIT
story_start=$(date -u +%Y-%m-%dT%H:%M:%SZ)
step "round one: C2s, a sinkhole's bots (each seen on five source ports), phishing URLs, scanners"
tw ingest jsonl "$world/round-1.jsonl"
sleep "$story_wait"
echo "hoster-01 got one alert per indicator (the bot's five ports are one alert, seen 5x):"
tw tail hoster-01 2>/dev/null | cut -c1-150
echo "hoster-40's scanner is on the operator's suppression list, and offline or expired C2"
echo "entries were not alerted (threatroute_match_screened_total below)."
step "the recipients answer (threatroute demo answer): most acknowledge and remediate"
tw demo answer --out "$world"
sleep "$story_wait"
step "hoster-12 said its C2 is not its own: it went to hoster-11, with the reason"
tw tail hoster-11 2>/dev/null | grep -i reroute | cut -c1-200 || true
step "... and the operator has a correction to decide (threatroute corrections list)"
tw corrections list
step "hoster-11 acknowledges what it was passed"
tw demo answer --out "$world"
step "hoster-23 never answers: its C2 goes to the upstream after 30s, to the CERT after 60s"
sleep $((65 - 2 * story_wait > 5 ? 65 - 2 * story_wait : 5))
echo "upstream-isp:"; tw tail upstream-isp 2>/dev/null | grep escalation | cut -c1-220 || true
echo "cert-gb:";      tw tail cert-gb 2>/dev/null | grep escalation | cut -c1-220 || true
since=$(date -u +%Y-%m-%dT%H:%M:%SZ)
step "round two, the next sightings: most C2s offline, two came back, the noisy feed again"
tw demo round-two --out "$world"
tw ingest jsonl "$world/round-2.jsonl"
sleep "$story_wait"
step "the noisy phishing feed after hoster-07's false positives (threatroute explain --trust)"
grep -m1 phish-noisy "$world/round-2.jsonl" | tw explain --trust --registry "$world/registry.yaml" \
  | grep -E '^line|screen|reaches|blocked' | grep -v 'cert-gb\|upstream-isp' || true
metrics_url="http://127.0.0.1:${THREATROUTE_METRICS_PORT:-9464}/metrics"
step "what the pipeline did, in its own metrics ($metrics_url)"
METRICS_URL=$metrics_url python3 - <<'PY' || true
import os, urllib.request
text = urllib.request.urlopen(os.environ["METRICS_URL"], timeout=5).read().decode()
for line in text.splitlines():
    if line.startswith(("threatroute_match_", "threatroute_feed_trust")) and not line.endswith(" 0.0"):
        print(" ", line)
PY
step "the operator accepts hoster-12's correction: the registry now says so"
cid=$(tw corrections list --json | python3 -c 'import json,sys; print(json.loads(sys.stdin.readline())["id"])')
tw corrections accept "$cid"
kill -TERM "$story"; wait "$story" || true; trap - EXIT
step "per recipient: alerts, answered, remediated, time to remediate, escalated, reduction"
tw report --from "$story_start" --since "$since"
cat <<EOF

How to look further:
  $tr report --since TIME          this table, for any moment (--from, --json)
  $tr tail RECIPIENT               what one recipient received (reroutes, escalations marked)
  $tr corrections list --all       not_ours claims and what the operator decided
  $tr explain --trust < FILE       why an indicator goes where it goes, with learned feed trust
  Grafana "threatroute / remediation", row "Feedback that acts": suppressed, withheld, rerouted,
  escalated, feed confidence over time (docs/dashboards.md); alert rules in deploy/prometheus.
  The world's files and configuration: $world
EOF
# -- end of the feedback story ---------------------------------------------------------------------
printf '\nThe broker keeps running, secure (data in %s/broker; the pipeline'"'"'s credentials in\n' "$state"
printf '%s/credentials/pipeline.properties, each recipient'"'"'s beside it). Run the pipeline again with\n' "$state"
printf '  %s run all      (metrics on http://127.0.0.1:9464/metrics)\n' "$tr"
printf 'and stop the broker with: %s broker stop\n' "$tr"
