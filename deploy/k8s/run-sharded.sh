#!/usr/bin/env bash
# Run the sharded analysis once: the Indexed Job, then (only if every shard
# completed) the merge Job. Needs kubectl pointed at the cluster and the
# analyze-failures ConfigMap from cronjob.yaml.
#   deploy/k8s/run-sharded.sh [timeout in seconds for the shards, default 21600]
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
timeout=${1:-21600}
kubectl=${KUBECTL:-kubectl}
poll=${POLL_SECONDS:-30}

# finish JOB SECONDS: wait until the Job is Complete (0) or Failed (1).
# `kubectl wait` takes one condition only; waiting for Complete alone would sit
# out the whole timeout after a failure.
finish() {
    local job=$1 deadline=$((SECONDS + $2)) conditions
    while ((SECONDS < deadline)); do
        conditions=$("$kubectl" get "job/$job" -o 'jsonpath={.status.conditions[?(@.status=="True")].type}')
        case " $conditions " in
            *" Complete "*) return 0 ;;
            *" Failed "*)
                echo "run-sharded: job $job failed" >&2
                return 1
                ;;
            *) ;;
        esac
        sleep "$poll"
    done
    echo "run-sharded: job $job did not finish within $2 s" >&2
    return 1
}

# Jobs are immutable: last run's finished Jobs must go before new ones start.
"$kubectl" delete job analyze-failures-shards analyze-failures-merge --ignore-not-found

"$kubectl" apply -f "$here/indexed-job.yaml"
# Only a complete shard Job is merged: never a partial tree.
finish analyze-failures-shards "$timeout"

"$kubectl" apply -f "$here/merge-job.yaml"
finish analyze-failures-merge 3600
echo "run-sharded: sharded analysis complete"
