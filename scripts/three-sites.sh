#!/usr/bin/env bash
# A consortium of three sites as three separate `fedanno node run` processes on loopback, set
# up from the deploy/ example configurations and driven through the command line only: what
# three hospitals' IT teams do on three machines (README, "Run a real consortium").
#
#   scripts/three-sites.sh [WORKDIR]       (FEDANNO_BIN: the binary, default target/debug/fedanno)
#
# Governance creates the consortium; every site is initialised from deploy/*.config.toml,
# requests and joins with its certificate (site-a also as coordinator), gets synthetic CT cases
# and reader masks (`fedanno synth`), ingests them, registers its readers and imports their
# annotations. The nodes start (site-a on a free port; the others bootstrap to the address it
# prints), and the lung-nodule study runs: launch, join and assign at every site, run at the
# coordinator, report (JSON + HTML) and audit verification at every site. Every node is then
# stopped; on any exit the trap kills what is left and checks that no node process remains.
# With WORKDIR the sites, data, logs and reports are kept there; else in a temporary directory
# that is removed.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD

BIN=${FEDANNO_BIN:-target/debug/fedanno}
case $BIN in /*) ;; *) BIN=$REPO/$BIN ;; esac
[[ -x $BIN ]] || { echo "three-sites: no fedanno binary at $BIN (build it or set FEDANNO_BIN)" >&2; exit 1; }
CASES=${CASES:-10}
SIZE=${SIZE:-64x64x32}
TIMEOUT=${TIMEOUT:-60}           # seconds any one wait may take
STUDY_MANIFEST=$REPO/policies/studies/lung-nodule-segmentation.toml
STUDY=lung-nodules
SITES=(site-a site-b site-c)

if [[ $# -ge 1 ]]; then
  WORK=$1; KEEP=1
  [[ -e $WORK/governance ]] && { echo "three-sites: $WORK already holds a consortium" >&2; exit 1; }
  mkdir -p "$WORK"; WORK=$(cd "$WORK" && pwd)
else
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/fedanno-three-sites.XXXXXX"); KEEP=0
fi
mkdir -p "$WORK/exchange" "$WORK/logs" "$WORK/reports"
# Nothing from the caller's environment may redirect a site.
unset FEDANNO_DIR FEDANNO_LISTEN FEDANNO_BOOTSTRAP FEDANNO_POLICY FEDANNO_LOG FEDANNO_LOG_FORMAT \
      FEDANNO_CHECKPOINT_INTERVAL_SECS FEDANNO_IDLE_TIMEOUT_SECS

START_MS=$(( $(date +%s%N) / 1000000 ))
elapsed() { local ms=$(( $(date +%s%N) / 1000000 - START_MS )); printf '%d.%02d' $((ms / 1000)) $((ms % 1000 / 10)); }
log() { printf '[%6s s] %s\n' "$(elapsed)" "$*"; }
fail() { echo "three-sites: FAILED: $*" >&2; exit 1; }

# fedanno at one site: site SITE ARGS...
site() { local s=$1; shift; FEDANNO_DIR=$WORK/$s "$BIN" "$@"; }

declare -A PID=()
cleanup() {
  local rc=$? s left=()
  for s in "${!PID[@]}"; do kill -TERM "${PID[$s]}" 2>/dev/null || true; done
  for s in "${!PID[@]}"; do
    # Bounded wait for a clean stop, then kill -9.
    for _ in $(seq 100); do kill -0 "${PID[$s]}" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "${PID[$s]}" 2>/dev/null || true
    wait "${PID[$s]}" 2>/dev/null || true
  done
  for s in "${!PID[@]}"; do kill -0 "${PID[$s]}" 2>/dev/null && left+=("$s:${PID[$s]}"); done
  # Any child process of this script still alive (a node started by it) is a failure.
  if [[ ${#left[@]} -gt 0 ]] || pgrep -P $$ -f fedanno >/dev/null 2>&1; then
    echo "three-sites: fedanno processes left behind: ${left[*]} $(pgrep -a -P $$ -f fedanno || true)" >&2
    rc=1
  fi
  if [[ $rc -ne 0 ]]; then
    for s in "${SITES[@]}"; do
      [[ -f $WORK/logs/$s.log ]] && { echo "--- last log lines of $s:" >&2; tail -n 15 "$WORK/logs/$s.log" >&2; }
    done
  fi
  if [[ $KEEP -eq 0 ]]; then rm -rf "$WORK"; fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# wait_until SECONDS DESCRIPTION COMMAND...: polls COMMAND every 0.1 s until it succeeds.
wait_until() {
  local secs=$1 what=$2; shift 2
  local deadline; deadline=$(( $(date +%s) + secs ))
  until "$@" >/dev/null 2>&1; do
    [[ $(date +%s) -lt $deadline ]] || fail "timed out after ${secs} s waiting for $what"
    sleep 0.1
  done
}

# --- 1. Governance: the consortium root (kept offline in a real consortium) -----------------
"$BIN" consortium new --name three-sites --out "$WORK/governance" >/dev/null
log "consortium three-sites created"

# --- 2. Each site: init from the deploy example config, request, admission, join -----------
for s in "${SITES[@]}"; do
  letter=${s#site-}
  name="Hospital ${letter^^}"
  template=$REPO/deploy/site.config.toml; roles=site
  if [[ $s == site-a ]]; then template=$REPO/deploy/coordinator.config.toml; roles=site,coordinator; fi
  "$BIN" init --dir "$WORK/$s" --site-name "$name" --site-id "$s" >/dev/null
  sed -e "s/^name = .*/name = \"$name\"/" -e "s/^id = .*/id = \"$s\"/" "$template" > "$WORK/$s/config.toml"
  site "$s" node request --out "$WORK/exchange/$s.req" >/dev/null
  "$BIN" consortium admit --root "$WORK/governance" --request "$WORK/exchange/$s.req" \
      --roles "$roles" --valid-days 30 --out "$WORK/exchange/$s.cert" >/dev/null
  site "$s" consortium join "$WORK/governance/consortium.info" "$WORK/exchange/$s.cert" \
      "$WORK/governance/crl.bin" >/dev/null
done
log "three sites initialised from deploy/*.config.toml and joined (site-a: coordinator)"

# --- 3. Each site: data, readers, annotations -----------------------------------------------
seed=1
for s in "${SITES[@]}"; do
  letter=${s#site-}; local_reader=local-$letter; data=$WORK/data/$s
  "$BIN" synth --out "$data" --cases "$CASES" --size "$SIZE" --seed $seed \
      --case-prefix "$s-case-" --local-reader "$local_reader" >/dev/null
  seed=$((seed + 1))
  site "$s" ingest "$data/dicom" --no-progress >/dev/null
  site "$s" readers add panel-expert --kind panel >/dev/null
  site "$s" readers add panel-generous --kind panel >/dev/null
  site "$s" readers add model-a --kind model >/dev/null
  site "$s" readers add "$local_reader" --kind local >/dev/null
  for r in panel-expert panel-generous model-a "$local_reader"; do
    site "$s" annotate import --reader "$r" "$data"/readers/"$r"/*.nii.gz --segments 1=nodule >/dev/null
  done
done
log "each site: $CASES synthetic CT cases ingested, 4 readers' masks imported"

# --- 4. The nodes, as separate processes ----------------------------------------------------
listening() { grep -m1 '^listening on /ip4/127.0.0.1/' "$WORK/logs/$1.out" | sed 's/^listening on //'; }
has_address() { [[ -n $(listening "$1") ]]; }
start_node() {  # start_node SITE BOOTSTRAP
  FEDANNO_DIR=$WORK/$1 FEDANNO_LISTEN=/ip4/127.0.0.1/tcp/0 FEDANNO_BOOTSTRAP=$2 FEDANNO_LOG_FORMAT=json \
    "$BIN" node run >"$WORK/logs/$1.out" 2>"$WORK/logs/$1.log" &
  PID[$1]=$!
  wait_until "$TIMEOUT" "$1 to listen" has_address "$1"
}
start_node site-a ""
ADDR_A=$(listening site-a)
start_node site-b "$ADDR_A"
start_node site-c "$ADDR_A,$(listening site-b)"
log "nodes running: pids ${PID[site-a]} ${PID[site-b]} ${PID[site-c]}; site-a at $ADDR_A"

ready() {  # ready SITE: healthy, and both other sites proven members
  local st; st=$(site "$1" node status --json) || return 1
  grep -q '"healthy": true' <<<"$st" && [[ $(site "$1" node peers --json | grep -c '"site":') -eq 2 ]]
}
for s in "${SITES[@]}"; do wait_until "$TIMEOUT" "$s to be healthy with 2 peers" ready "$s"; done
log "every node healthy and connected to the other two"

# --- 5. The study, through the command line only --------------------------------------------
site site-a study launch "$STUDY_MANIFEST" | sed 's/^/    /'
for s in "${SITES[@]}"; do
  site "$s" study join "$STUDY" --json > "$WORK/reports/$s.join.json"
  grep -q '"joined": true' "$WORK/reports/$s.join.json" || fail "$s declined: $(cat "$WORK/reports/$s.join.json")"
done
for s in "${SITES[@]}"; do site "$s" study assign "$STUDY" | sed 's/^/    /'; done
log "launched, joined and assigned at every site"
site site-a study run "$STUDY" --json > "$WORK/reports/run.json"
log "study run at the coordinator"
for s in "${SITES[@]}"; do
  wait_until "$TIMEOUT" "the report at $s" site "$s" study report "$STUDY" --json
  site "$s" study report "$STUDY" --json --html "$WORK/reports/$s.html" > "$WORK/reports/$s.json"
  grep -q '"method": "staple"' "$WORK/reports/$s.json" || fail "the report at $s is not a STAPLE report"
done
cmp -s "$WORK/reports/site-b.json" "$WORK/reports/site-c.json" || fail "site-b and site-c hold different reports"
site site-a study report "$STUDY" | sed 's/^/    /'
log "report (JSON + HTML) at every site"

# --- 6. Audit, stop ---------------------------------------------------------------------------
for s in "${SITES[@]}"; do
  site "$s" audit verify >/dev/null || fail "the audit log of $s does not verify"
  n=$(site "$s" audit log --study "$STUDY" --json | grep -c '"seq":' || true)
  [[ $n -gt 0 ]] || fail "no audit entry of $STUDY at $s"
  log "$s: audit log verified; $n entries of study $STUDY"
done
for s in "${SITES[@]}"; do site "$s" node stop >/dev/null; done
for s in "${SITES[@]}"; do
  wait "${PID[$s]}" || fail "the node of $s exited with status $?"
  unset "PID[$s]"
done
for s in "${SITES[@]}"; do
  if site "$s" node status --json >/dev/null 2>&1; then fail "$s still answers after node stop"; fi
done
log "all three nodes stopped cleanly"
if [[ $KEEP -eq 1 ]]; then echo "Sites, logs and reports are in $WORK (reports/: site-*.json, site-*.html)."; fi
echo "three-sites: OK in $(elapsed) s"
