#!/usr/bin/env bash
# Demo: two `konsumer consume` processes share a topic as one consumer group.
#
#   1. start a tansu broker (memory storage) on a free port and create topic `demo` with
#      4 partitions;
#   2. start two group members in the background, each printing to a file of its own;
#   3. produce 1000 lines with `konsumer produce`;
#   4. show how the members split the records (per member and per partition);
#   5. show `konsumer group describe` once the lag has reached 0;
#   6. stop both members with SIGINT (they commit and leave the group) and check they exit 0.
#
# Everything lives in a temporary directory that is removed at the end, so the demo can run
# again at once. Builds the CLI (debug) and installs tansu first if needed (scripts/install-tansu.sh,
# cached outside the project).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

TANSU="$(bash scripts/install-tansu.sh | tail -n 1)"
export KONSUMER_TANSU="$TANSU"

echo "building the konsumer CLI ..." >&2
cargo build --quiet -p konsumer-cli
KONSUMER="${CARGO_TARGET_DIR:-$PWD/target}/debug/konsumer"

PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null ||
    echo $((20000 + RANDOM % 20000)))"
BROKER="127.0.0.1:$PORT"
TOPIC=demo
GROUP=demo-group

WORK="$(mktemp -d)"
BROKER_PID=""
MEMBER_PIDS=()
cleanup() {
    for pid in "${MEMBER_PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    if [ -n "$BROKER_PID" ]; then
        kill "$BROKER_PID" 2>/dev/null || true
        wait "$BROKER_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

fail() {
    echo "demo failed: $*" >&2
    for f in "$WORK"/*.err; do
        [ -s "$f" ] && { echo "--- $(basename "$f")" >&2; tail -n 20 "$f" >&2; }
    done
    exit 1
}

# Polls `$@` every 0.2 s for at most $1 seconds until it succeeds.
wait_for() {
    local seconds="$1"
    shift
    for _ in $(seq 1 $((seconds * 5))); do
        "$@" && return 0
        sleep 0.2
    done
    return 1
}

echo "starting tansu on $BROKER (log: $WORK/broker.log)" >&2
bash scripts/start-broker.sh "$PORT" memory "$WORK" >"$WORK/broker.log" 2>&1 &
BROKER_PID=$!
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; }
wait_for 30 port_open || { cat "$WORK/broker.log" >&2; fail "tansu did not open port $PORT"; }

"$TANSU" topic create "$TOPIC" --partitions 4 --broker "tcp://$BROKER" >/dev/null

echo
echo "== two members of group $GROUP consume topic $TOPIC"
for member in a b; do
    echo "\$ konsumer consume --brokers $BROKER --group $GROUP --topic $TOPIC --from-beginning > $member.txt &"
    "$KONSUMER" consume --brokers "$BROKER" --group "$GROUP" --topic "$TOPIC" --from-beginning \
        --commit-interval 500ms --session-timeout 6s >"$WORK/$member.txt" 2>"$WORK/$member.err" &
    MEMBER_PIDS+=($!)
done

# Produce only once both members hold their partitions, so no partition changes hands in the
# middle of the records (tansu's memory engine cannot resume inside a produced batch).
group_stable() {
    local out
    out="$("$KONSUMER" group describe "$GROUP" --brokers "$BROKER" 2>/dev/null)" || return 1
    grep -q '^STATE  *Stable' <<<"$out" && grep -q '^MEMBERS  *2$' <<<"$out"
}
wait_for 60 group_stable || fail "the group did not settle with two members"
sleep 1

echo
echo "== produce 1000 lines (key<TAB>value)"
echo "\$ for i in \$(seq 1 996); do printf 'user-%d\\tevent %d\\n' \$i \$i; done | konsumer produce --brokers $BROKER --topic $TOPIC"
for i in $(seq 1 996); do printf 'user-%d\tevent %d\n' "$i" "$i"; done |
    "$KONSUMER" produce --brokers "$BROKER" --topic "$TOPIC"
# The last record of each partition goes alone: tansu 0.6.0's memory engine reports a
# partition's end offset right only when its last batch holds one record (see DESIGN.md).
echo "\$ for p in 0 1 2 3; do printf 'last-%d\\tend of partition %d\\n' \$p \$p | konsumer produce --brokers $BROKER --topic $TOPIC --partition \$p; done"
for p in 0 1 2 3; do
    printf 'last-%d\tend of partition %d\n' "$p" "$p" |
        "$KONSUMER" produce --brokers "$BROKER" --topic "$TOPIC" --partition "$p"
done

all_printed() { [ "$(cat "$WORK/a.txt" "$WORK/b.txt" | wc -l)" -ge 1000 ]; }
wait_for 60 all_printed || fail "only $(cat "$WORK/a.txt" "$WORK/b.txt" | wc -l) of 1000 records printed"

echo
echo "== the split: records per member and per partition"
echo "\$ head -n 3 a.txt"
head -n 3 "$WORK/a.txt"
for member in a b; do
    per_partition="$(cut -f1 "$WORK/$member.txt" | cut -d/ -f2 | sort -n | uniq -c |
        awk '{ printf "%spartition %s: %s", sep, $2, $1; sep = ", " }')"
    printf 'member %s: %4d records (%s)\n' "$member" "$(wc -l <"$WORK/$member.txt")" "$per_partition"
done
total="$(cat "$WORK/a.txt" "$WORK/b.txt" | wc -l)"
distinct="$(cat "$WORK/a.txt" "$WORK/b.txt" | cut -f1 | sort -u | wc -l)"
echo "together: $total lines, $distinct distinct records"
[ "$total" -eq 1000 ] && [ "$distinct" -eq 1000 ] || fail "expected every record exactly once"

echo
echo "== committed offsets catch up: lag 0"
lag_zero() {
    DESCRIBED="$("$KONSUMER" group describe "$GROUP" --brokers "$BROKER" 2>/dev/null)" || return 1
    grep -q '^TOTAL-LAG  *0$' <<<"$DESCRIBED" &&
        [ "$(sed -n '/^TOPIC /,$p' <<<"$DESCRIBED" | grep -c "^$TOPIC ")" -eq 4 ]
}
wait_for 30 lag_zero || fail "the lag did not reach 0"
echo "\$ konsumer group describe $GROUP --brokers $BROKER"
echo "$DESCRIBED"

echo
echo "== stop both members with SIGINT (they commit and leave the group)"
for i in 0 1; do
    kill -INT "${MEMBER_PIDS[$i]}"
done
for i in 0 1; do
    member=$([ "$i" -eq 0 ] && echo a || echo b)
    status=0
    wait "${MEMBER_PIDS[$i]}" || status=$?
    echo "member $member exited with status $status"
    [ "$status" -eq 0 ] || fail "member $member exited with $status"
done
MEMBER_PIDS=()
echo "\$ konsumer group describe $GROUP --brokers $BROKER | head -n 7"
"$KONSUMER" group describe "$GROUP" --brokers "$BROKER" | head -n 7
