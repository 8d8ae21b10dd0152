#!/usr/bin/env bash
# Container entrypoint: turn environment variables into analyze-failures flags,
# check the output folder, then exec the job (so it is PID 1 and gets SIGTERM).
#
#   (no arguments)          analyze-failures run --output-dir "$OUTPUT_DIR" <env flags>
#   --flag ...              the same, with the flags appended (they win over env)
#   download|parse|run|merge|report [flags]
#                           that subcommand, with the env flags that apply to it:
#                             download  download --output-dir "$OUTPUT_DIR/failed_runs"
#                             parse     parse --failed-runs-dir .../failed_runs --output-dir .../aide_journals
#                             merge     merge --output-dir "$OUTPUT_DIR" (shards, then the report)
#                             report    report --output-dir "$OUTPUT_DIR" (index.html and failures.csv only)
#   --version               analyze-failures --version
#   anything else           exec'd as is (bash, python ...), for debugging
#
# Environment (empty = unset):
#   OUTPUT_DIR=/data  BUCKET_PATH  ENDPOINT_URL  CONCURRENT  LOG_FORMAT
#   KEEP_COMPRESSED  DRY_RUN  FORCE  NO_SIGN_REQUEST   (booleans: 1/true/yes/on, 0/false/no/off)
#   AWS_* (credentials, AWS_PROFILE, AWS_ENDPOINT_URL), SHARD_INDEX, SHARD_COUNT, METRICS_FILE, WAIT_LOCK, MAX_JOURNAL_BYTES,
#   JOB_COMPLETION_INDEX, AWS_BATCH_JOB_ARRAY_INDEX: read by boto3 / the CLI directly.
#   ANALYZE_FAILURES_BIN: the program to exec (tests point it at a venv).
set -euo pipefail

bin=${ANALYZE_FAILURES_BIN:-analyze-failures}
output_dir=${OUTPUT_DIR:-/data}

# `VAR=` in a compose .env arrives as an empty value, and boto3 reads an empty
# AWS_PROFILE as a profile named "" (ProfileNotFound). Empty means unset, always.
for var in AWS_PROFILE AWS_DEFAULT_PROFILE AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY \
    AWS_SESSION_TOKEN AWS_REGION AWS_DEFAULT_REGION AWS_ENDPOINT_URL \
    AWS_CONFIG_FILE AWS_SHARED_CREDENTIALS_FILE SHARD_INDEX SHARD_COUNT; do
    [[ -z ${!var-unset} ]] && unset "$var"
done

# Configuration errors: one line on stderr and exit 2, like the CLI's own.
die() {
    printf 'entrypoint: %s\n' "$*" >&2
    exit 2
}

# enabled NAME: is the boolean variable NAME on? A typo must not silently mean
# "off" (DRY_RUN=ture would then really download), so anything unknown is fatal.
enabled() {
    local name=$1 value=${!1:-}
    case ${value,,} in
        1 | true | yes | on) return 0 ;;
        0 | false | no | off | '') return 1 ;;
        *) die "$name=$value is not a boolean: use 1/true/yes/on or 0/false/no/off" ;;
    esac
}

# Which subcommand, and what is left for it.
command=run
if (($# > 0)); then
    case $1 in
        download | parse | run | merge | report)
            command=$1
            shift
            ;;
        --version) exec "$bin" --version ;;
        -*) ;; # flags for `run`
        *) exec "$@" ;; # a debugging shell etc.: no checks, it may be how you fix them
    esac
fi

# Validate every boolean up front, whichever subcommand uses it.
for var in KEEP_COMPRESSED DRY_RUN FORCE NO_SIGN_REQUEST; do
    enabled "$var" || true
done

# Flags shared by download, parse and run (argparse: later flags win, so the
# arguments given on the command line, appended last, override these).
common=()
[[ -n ${CONCURRENT:-} ]] && common+=(--concurrent "$CONCURRENT")
[[ -n ${LOG_FORMAT:-} ]] && common+=(--log-format "$LOG_FORMAT")
enabled DRY_RUN && common+=(--dry-run)
enabled FORCE && common+=(--force)

# Flags that say where and how to read the bucket: download and run only.
bucket=()
[[ -n ${BUCKET_PATH:-} ]] && bucket+=(--bucket-path "$BUCKET_PATH")
[[ -n ${ENDPOINT_URL:-} ]] && bucket+=(--endpoint-url "$ENDPOINT_URL")
enabled KEEP_COMPRESSED && bucket+=(--keep-compressed)
enabled NO_SIGN_REQUEST && bucket+=(--no-sign-request)

case $command in
    run) flags=(--output-dir "$output_dir" "${common[@]}" "${bucket[@]}") ;;
    download) flags=(--output-dir "$output_dir/failed_runs" "${common[@]}" "${bucket[@]}") ;;
    parse) flags=(--failed-runs-dir "$output_dir/failed_runs"
        --output-dir "$output_dir/aide_journals" "${common[@]}") ;;
    # merge and report work on the whole tree; LOG_FORMAT reaches them through the
    # environment, which the CLI reads itself.
    merge | report) flags=(--output-dir "$output_dir") ;;
esac

# Asking for help needs no volume.
for arg in "$@"; do
    [[ $arg == -h || $arg == --help ]] && exec "$bin" "$command" "$@"
done

# AWS files this uid cannot read. boto3 silently skips a file it cannot open, so a
# host's ~/.aws mounted as is (credentials mode 0600, owned by the host user, not
# by this uid) would surface later as "profile not found" or "no credentials".
# Checked only where the files are the credential source: a profile is named, or
# neither static keys, web identity (IRSA) nor container credentials are set.
# A skipped bucket read (merge, report, --no-sign-request) needs no credentials.
aws_files_matter() {
    [[ $command == merge || $command == report ]] && return 1
    enabled NO_SIGN_REQUEST && return 1
    [[ " $* " == *" --no-sign-request "* ]] && return 1
    [[ -n ${AWS_PROFILE:-}${AWS_DEFAULT_PROFILE:-} ]] && return 0
    [[ -z ${AWS_ACCESS_KEY_ID:-}${AWS_WEB_IDENTITY_TOKEN_FILE:-} ]] &&
        [[ -z ${AWS_CONTAINER_CREDENTIALS_RELATIVE_URI:-}${AWS_CONTAINER_CREDENTIALS_FULL_URI:-} ]]
}
if aws_files_matter "$@"; then
    aws_fix="run as its owner (compose: ANALYZE_UID/ANALYZE_GID), or pass AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY instead (see docs/container.md, Credentials)"
    for file in "${AWS_SHARED_CREDENTIALS_FILE:-${HOME:-}/.aws/credentials}" \
        "${AWS_CONFIG_FILE:-${HOME:-}/.aws/config}"; do
        folder=$(dirname -- "$file")
        if [[ -d $folder && ! -x $folder ]]; then
            die "AWS folder $folder is not readable by uid $(id -u): $aws_fix"
        fi
        if [[ -e $file && ! -r $file ]]; then
            die "AWS file $file is not readable by uid $(id -u): $aws_fix"
        fi
    done
fi

# The volume must be there and writable by this uid. A dry run is checked too: it
# is how a new deployment is tried out, and this is its most common mistake.
# [ -w ] alone is not enough (read-only mounts, full disks, root-squashed NFS can
# pass it), so a probe file is really created and removed.
fix="chown it to $(id -u):$(id -g), or mount a writable folder (compose: set ANALYSIS_OUTPUT, or ANALYZE_UID/ANALYZE_GID to its owner)"
if [[ ! -d $output_dir ]]; then
    die "output dir $output_dir does not exist: mount a volume there or set OUTPUT_DIR"
fi
probe="$output_dir/.entrypoint-probe.$$"
if [[ ! -w $output_dir ]] || ! { : >"$probe"; } 2>/dev/null; then
    die "output dir $output_dir is not writable by uid $(id -u): $fix"
fi
rm -f -- "$probe"

exec "$bin" "$command" "${flags[@]}" "$@"
