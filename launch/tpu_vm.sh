#!/usr/bin/env bash
# Launch eeprune_jax.main on a Cloud TPU VM (single host or pod slice).
# See launch/README.md and `launch/tpu_vm.sh --help`.
set -euo pipefail

PROG=$(basename "$0")
# shellcheck source=launch/_common.sh
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"

usage() {
  cat <<USAGE
Usage: ${PROG} COMMAND [flags] [--config.KEY=VALUE ...] [-- extra main flags]

Create a Cloud TPU VM, install eeprune-jax on every worker, run
python -m eeprune_jax.main on all workers at once, follow its log, bring the
workdir back and delete the VM. Every command goes through gcloud.

Commands:
  create   gcloud compute tpus tpu-vm create (needs --name --zone --accelerator-type)
  install  copy this checkout (or git clone --git-url) to every worker and
           pip install -e ".[gcs]" "jax[tpu]" into a venv there (needs --name --zone)
  run      start the job on all workers in the background under nohup
           (needs --name --zone --config --workdir)
  up       create + install + run
  logs     tail -F the log on one worker (default worker 0)
  stop     send SIGTERM to the job on all workers (it checkpoints and exits)
  fetch    bring the workdir back: gcloud storage rsync for gs://, else scp
           --recurse from worker 0 (needs --name --zone --workdir)
  delete   gcloud compute tpus tpu-vm delete

Flags (--flag=value or --flag value; '_' and '-' are the same in flag names):
  --name=NAME              TPU VM name (all commands)
  --zone=ZONE              zone, e.g. us-central2-b (all commands)
  --project=PROJECT        gcloud project (default: gcloud's configured project)
  --accelerator-type=TYPE  create/up: e.g. v4-8, v4-32, v5litepod-8, v5p-8, v6e-8
  --version=VERSION        create/up: TPU runtime (software) version; default from
                           the accelerator: v2/v3/v4 tpu-ubuntu2204-base,
                           v5litepod v2-alpha-tpuv5-lite, v5p v2-alpha-tpuv5,
                           v6e v2-alpha-tpuv6e (alias: --runtime-version)
  --multihost              run/up: pass --multihost to eeprune_jax.main, which then
                           calls jax.distributed.initialize(); automatic when
                           --accelerator-type has more than 8 cores/chips (v4-16+)
  --spot                   create/up: Spot VM (can be preempted at any time)
  --preemptible            create/up: legacy preemptible TPU (24 h max)
  --git-url=URL            install/up: git clone URL on the workers instead of
                           copying this checkout
  --git-ref=REF            install/up: branch, tag or commit to check out (default HEAD)
  --remote-dir=DIR         project folder on the workers (default eeprune-jax,
                           relative paths are under \$HOME)
  --venv=DIR               venv on the workers (default eeprune-venv under \$HOME)
  --python-version=X.Y     Python for the venv, fetched by uv if missing (default 3.12;
                           JAX >= 0.7 needs >= 3.11, the TPU images ship 3.10)
  --config=PATH            run/up: config file, e.g. configs/cifar100.py
  --workdir=DIR            run/up/fetch: gs://bucket/path (needed on pods) or a
                           path on the workers (relative: under --remote-dir)
  --data-dir=DIR           run/up: passed as --config.data.data_dir=DIR
  --config.KEY=VALUE       run/up: config override, passed through unchanged
  -- ARGS...               run/up: everything after -- goes to eeprune_jax.main
  --log-file=FILE          log on each worker (default eeprune-run.log under \$HOME)
  --pid-file=FILE          pid file on each worker (default eeprune-run.pid under \$HOME)
  --worker=N               logs: worker to follow (default 0)
  --lines=N                logs: lines of history to show first (default 200)
  --dest=DIR               fetch: local destination (default workdirs/<basename of workdir>)
  --yes                    delete: do not ask for confirmation (gcloud --quiet)
  --dry-run                print the commands, one per line, and run none
  -h, --help               show this help

On a pod slice (e.g. v4-32: 4 hosts) the same command starts one process per
host, with --multihost (added automatically for such accelerator types, or
pass --multihost to 'run'); eeprune_jax.main then calls
jax.distributed.initialize() itself, which finds the other hosts from the TPU
metadata, and each host feeds its own devices.
Use a gs:// workdir on pods so that all hosts share checkpoints.
On preemption the job saves a checkpoint on SIGTERM; rerunning the same
'run' (or 'up') command resumes from the checkpoint in the same workdir.
USAGE
}

CMD="" TPU_NAME="" ZONE="" PROJECT="" ACCEL="" RUNTIME="" SPOT=0 PREEMPTIBLE=0
GIT_URL="" GIT_REF="HEAD" REMOTE_DIR="eeprune-jax" VENV="eeprune-venv" PY_VERSION="3.12"
CONFIG="" WORKDIR="" DATA_DIR="" LOG_FILE="eeprune-run.log" PID_FILE="eeprune-run.pid"
WORKER="0" TAIL_LINES="200" DEST="" YES=0 ENV_PREFIX="" MULTIHOST=0
OVERRIDES=()

while (($#)); do
  a=$1
  shift
  case $a in
    -h | --help) usage; exit 0 ;;
    --) OVERRIDES+=("$@"); break ;;
    --config.*)
      if [[ $a == *=* ]]; then
        OVERRIDES+=("$a")
      else
        (($#)) || die "flag $a needs a value"
        OVERRIDES+=("$a=$1")
        shift
      fi
      continue ;;
    --*) ;;
    *)
      [[ -z $CMD ]] || die "unexpected argument '$a' (config overrides look like --config.KEY=VALUE)"
      CMD=$a
      continue ;;
  esac
  name=${a%%=*}
  name=${name//_/-}
  case $name in
    --dry-run | --spot | --preemptible | --yes | --multihost)
      [[ $a != *=* ]] || die "flag $name takes no value"
      case $name in
        --multihost) MULTIHOST=1 ;;
        --dry-run) DRY_RUN=1 ;;
        --spot) SPOT=1 ;;
        --preemptible) PREEMPTIBLE=1 ;;
        --yes) YES=1 ;;
      esac ;;
    --name | --zone | --project | --accelerator-type | --version | --runtime-version | \
      --git-url | --git-ref | --remote-dir | --venv | --python-version | --config | \
      --workdir | --data-dir | --log-file | --pid-file | --worker | --lines | --dest)
      if [[ $a == *=* ]]; then
        val=${a#*=}
      else
        [[ $# -gt 0 && $1 != --* ]] || die "flag $name needs a value"
        val=$1
        shift
      fi
      [[ -n $val ]] || die "flag $name needs a non-empty value"
      case $name in
        --name) TPU_NAME=$val ;;
        --zone) ZONE=$val ;;
        --project) PROJECT=$val ;;
        --accelerator-type) ACCEL=$val ;;
        --version | --runtime-version) RUNTIME=$val ;;
        --git-url) GIT_URL=$val ;;
        --git-ref) GIT_REF=$val ;;
        --remote-dir) REMOTE_DIR=$val ;;
        --venv) VENV=$val ;;
        --python-version) PY_VERSION=$val ;;
        --config) CONFIG=$val ;;
        --workdir) WORKDIR=$val ;;
        --data-dir) DATA_DIR=$val ;;
        --log-file) LOG_FILE=$val ;;
        --pid-file) PID_FILE=$val ;;
        --worker) WORKER=$val ;;
        --lines) TAIL_LINES=$val ;;
        --dest) DEST=$val ;;
      esac ;;
    *) die "unknown flag '$name'" ;;
  esac
done

[[ -n $CMD ]] || die "missing COMMAND (one of: create install run up logs stop fetch delete)"
case $CMD in
  create | install | run | up | logs | stop | fetch | delete) ;;
  *) die "unknown command '$CMD' (one of: create install run up logs stop fetch delete)" ;;
esac

need() { # need VALUE FLAG: die unless VALUE is set
  [[ -n $1 ]] || die "missing $2 (required by '$CMD')"
}
need "$TPU_NAME" --name
need "$ZONE" --zone
GFLAGS=("--zone=$ZONE")
[[ -n $PROJECT ]] && GFLAGS+=("--project=$PROJECT")
TPU=(gcloud compute tpus tpu-vm)
SRC_TARBALL="eeprune-jax-src.tar.gz"

default_runtime() {
  case $1 in
    v2-* | v3-* | v4-*) echo tpu-ubuntu2204-base ;;
    v5litepod-* | v5e-*) echo v2-alpha-tpuv5-lite ;;
    v5p-*) echo v2-alpha-tpuv5 ;;
    v6e-*) echo v2-alpha-tpuv6e ;;
    *) die "cannot pick a runtime for --accelerator-type=$1; pass --version" ;;
  esac
}

do_create() {
  need "$ACCEL" --accelerator-type
  [[ $ACCEL =~ ^v[0-9]+[a-z]*-[0-9]+$ ]] || die "bad --accelerator-type '$ACCEL' (expected e.g. v4-8, v5litepod-16)"
  ((SPOT && PREEMPTIBLE)) && die "--spot and --preemptible cannot be used together"
  [[ -n $RUNTIME ]] || RUNTIME=$(default_runtime "$ACCEL")
  local c=("${TPU[@]}" create "$TPU_NAME" "${GFLAGS[@]}" "--accelerator-type=$ACCEL" "--version=$RUNTIME")
  ((SPOT)) && c+=(--spot)
  ((PREEMPTIBLE)) && c+=(--preemptible)
  run "${c[@]}"
}

do_install() {
  if [[ -z $GIT_URL ]]; then
    local tarball="${TMPDIR:-/tmp}/eeprune-jax-src.tar.gz"
    run tar -czf "$tarball" -C "$REPO_ROOT" "${TAR_EXCLUDES[@]}" .
    run "${TPU[@]}" scp "$tarball" "$TPU_NAME:$SRC_TARBALL" "${GFLAGS[@]}" --worker=all
  else
    SRC_TARBALL=""
  fi
  run "${TPU[@]}" ssh "$TPU_NAME" "${GFLAGS[@]}" --worker=all \
    "--command=$(install_script 'jax[tpu]')"
}

do_run() {
  need "$CONFIG" --config
  need "$WORKDIR" --workdir
  check_config "$CONFIG"
  if [[ -n $DATA_DIR ]] && ! is_gs "$DATA_DIR"; then
    warn "--data-dir '$DATA_DIR' is not a gs:// URL; it must exist on every worker"
  fi
  # Slices with more than 8 cores/chips (v4-16, v4-32, v5litepod-16, ...) span several hosts.
  if [[ $ACCEL =~ -([0-9]+)$ ]] && ((BASH_REMATCH[1] > 8)); then MULTIHOST=1; fi
  if ((MULTIHOST)); then OVERRIDES=(--multihost "${OVERRIDES[@]}"); fi
  run "${TPU[@]}" ssh "$TPU_NAME" "${GFLAGS[@]}" --worker=all "--command=$(run_script)"
}

do_logs() {
  [[ $WORKER =~ ^[0-9]+$ ]] || die "bad --worker '$WORKER' (expected a worker number)"
  [[ $TAIL_LINES =~ ^[0-9]+$ ]] || die "bad --lines '$TAIL_LINES'"
  run "${TPU[@]}" ssh "$TPU_NAME" "${GFLAGS[@]}" "--worker=$WORKER" "--command=$(logs_script)"
}

do_stop() {
  run "${TPU[@]}" ssh "$TPU_NAME" "${GFLAGS[@]}" --worker=all "--command=$(stop_script)"
}

do_fetch() {
  need "$WORKDIR" --workdir
  local dest=${DEST:-workdirs/$(basename "$WORKDIR")}
  if is_gs "$WORKDIR"; then
    run mkdir -p "$dest"
    run gcloud storage rsync --recursive "$WORKDIR" "$dest"
  else
    local src=$WORKDIR
    # shellcheck disable=SC2088  # a literal ~/ prefix given by the user
    case $src in
      /*) ;;
      '~/'*) src=${src#\~/} ;;
      *) src=${REMOTE_DIR#\~/}/$src ;;
    esac
    run mkdir -p "$(dirname "$dest")"
    run "${TPU[@]}" scp --recurse "$TPU_NAME:$src" "$dest" "${GFLAGS[@]}" --worker=0
  fi
}

do_delete() {
  local c=("${TPU[@]}" delete "$TPU_NAME" "${GFLAGS[@]}")
  ((YES)) && c+=(--quiet)
  run "${c[@]}"
}

case $CMD in
  create) do_create ;;
  install) do_install ;;
  run) do_run ;;
  up)
    need "$CONFIG" --config
    need "$WORKDIR" --workdir
    do_create
    do_install
    do_run ;;
  logs) do_logs ;;
  stop) do_stop ;;
  fetch) do_fetch ;;
  delete) do_delete ;;
esac
