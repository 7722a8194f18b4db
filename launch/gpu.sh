#!/usr/bin/env bash
# Launch eeprune_jax.main on one machine with one or more NVIDIA GPUs, here or
# over ssh (--host user@host). See launch/README.md and `launch/gpu.sh --help`.
set -euo pipefail

PROG=$(basename "$0")
# shellcheck source=launch/_common.sh
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"

usage() {
  cat <<USAGE
Usage: ${PROG} COMMAND [flags] [--config.KEY=VALUE ...] [-- extra main flags]

Install eeprune-jax with "jax[cuda12]" on a GPU machine, run
python -m eeprune_jax.main there in the background (nohup, with a log), follow
the log and bring the workdir back. Without --host everything runs on this
machine, in this checkout; with --host the checkout is copied (or cloned) to
the host and the commands go through ssh/scp.

Commands:
  install  (--host: copy this checkout or git clone --git-url there, then)
           uv pip install -e ".[gcs]" "jax[cuda12]" into a venv
  run      start the job in the background (needs --config --workdir)
  up       install + run
  logs     tail -F the log
  stop     send SIGTERM to the job (it checkpoints and exits)
  fetch    bring the workdir back: gcloud storage rsync for gs://, scp -r from
           --host otherwise (needs --workdir)

Flags (--flag=value or --flag value; '_' and '-' are the same in flag names):
  --host=USER@HOST         run over ssh on this host (default: this machine)
  --jax-extra=EXTRA        JAX extra to install: cuda12 (default) or cuda13
                           (CUDA 13 needs a driver >= 580)
  --gpus=LIST              run/up: CUDA_VISIBLE_DEVICES, e.g. 0,1,2,3 (default: all)
  --git-url=URL            install/up: git clone URL on the host instead of copying
  --git-ref=REF            install/up: branch, tag or commit (default HEAD)
  --remote-dir=DIR         project folder on --host (default eeprune-jax under \$HOME;
                           without --host: this checkout)
  --venv=DIR               venv (default eeprune-venv under \$HOME)
  --python-version=X.Y     Python for the venv, fetched by uv if missing (default 3.12)
  --config=PATH            run/up: config file, e.g. configs/cifar10.py
  --workdir=DIR            run/up/fetch: gs://bucket/path or a path on the host
                           (relative: under the project folder)
  --data-dir=DIR           run/up: passed as --config.data.data_dir=DIR
  --config.KEY=VALUE       run/up: config override, passed through unchanged
  -- ARGS...               run/up: everything after -- goes to eeprune_jax.main
  --log-file=FILE          log (default eeprune-run.log under \$HOME)
  --pid-file=FILE          pid file (default eeprune-run.pid under \$HOME)
  --lines=N                logs: lines of history to show first (default 200)
  --dest=DIR               fetch: local destination (default workdirs/<basename of workdir>)
  --dry-run                print the commands, one per line, and run none
  -h, --help               show this help

JAX uses every visible GPU from one process; no launcher such as torchrun is
needed. On SIGTERM the job saves a checkpoint; rerunning the same 'run'
command resumes from the checkpoint in the same workdir.
USAGE
}

CMD="" HOST="" JAX_EXTRA="cuda12" GPUS=""
GIT_URL="" GIT_REF="HEAD" REMOTE_DIR="" VENV="eeprune-venv" PY_VERSION="3.12"
CONFIG="" WORKDIR="" DATA_DIR="" LOG_FILE="eeprune-run.log" PID_FILE="eeprune-run.pid"
TAIL_LINES="200" DEST="" ENV_PREFIX=""
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
    --dry-run)
      [[ $a != *=* ]] || die "flag $name takes no value"
      DRY_RUN=1 ;;
    --host | --jax-extra | --gpus | --git-url | --git-ref | --remote-dir | --venv | \
      --python-version | --config | --workdir | --data-dir | --log-file | --pid-file | \
      --lines | --dest)
      if [[ $a == *=* ]]; then
        val=${a#*=}
      else
        [[ $# -gt 0 && $1 != --* ]] || die "flag $name needs a value"
        val=$1
        shift
      fi
      [[ -n $val ]] || die "flag $name needs a non-empty value"
      case $name in
        --host) HOST=$val ;;
        --jax-extra) JAX_EXTRA=$val ;;
        --gpus) GPUS=$val ;;
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
        --lines) TAIL_LINES=$val ;;
        --dest) DEST=$val ;;
      esac ;;
    *) die "unknown flag '$name'" ;;
  esac
done

[[ -n $CMD ]] || die "missing COMMAND (one of: install run up logs stop fetch)"
case $CMD in
  install | run | up | logs | stop | fetch) ;;
  *) die "unknown command '$CMD' (one of: install run up logs stop fetch)" ;;
esac

need() { # need VALUE FLAG: die unless VALUE is set
  [[ -n $1 ]] || die "missing $2 (required by '$CMD')"
}
case $JAX_EXTRA in
  cuda12 | cuda13) ;;
  *) die "bad --jax-extra '$JAX_EXTRA' (expected cuda12 or cuda13)" ;;
esac
if [[ -n $GPUS ]]; then
  [[ $GPUS =~ ^[0-9]+(,[0-9]+)*$ ]] || die "bad --gpus '$GPUS' (expected e.g. 0,1,2,3)"
  ENV_PREFIX="CUDA_VISIBLE_DEVICES=$GPUS"
fi
if [[ -z $HOST ]]; then
  [[ -z $GIT_URL ]] || die "--git-url needs --host (locally this checkout is used)"
  REMOTE_DIR=${REMOTE_DIR:-$REPO_ROOT}
else
  [[ $HOST != -* && $HOST != *' '* ]] || die "bad --host '$HOST' (expected user@host)"
  REMOTE_DIR=${REMOTE_DIR:-eeprune-jax}
fi
SRC_TARBALL="eeprune-jax-src.tar.gz"

# on_host SCRIPT: run a shell script on the host (ssh) or here (bash -c).
on_host() {
  if [[ -n $HOST ]]; then
    run ssh "$HOST" "$1"
  else
    run bash -c "$1"
  fi
}

do_install() {
  if [[ -z $HOST ]]; then
    SRC_TARBALL=""
  elif [[ -z $GIT_URL ]]; then
    local tarball="${TMPDIR:-/tmp}/eeprune-jax-src.tar.gz"
    run tar -czf "$tarball" -C "$REPO_ROOT" "${TAR_EXCLUDES[@]}" .
    run scp "$tarball" "$HOST:$SRC_TARBALL"
  else
    SRC_TARBALL=""
  fi
  on_host "$(install_script "jax[$JAX_EXTRA]")"
}

do_run() {
  need "$CONFIG" --config
  need "$WORKDIR" --workdir
  check_config "$CONFIG"
  on_host "$(run_script)"
}

do_logs() {
  [[ $TAIL_LINES =~ ^[0-9]+$ ]] || die "bad --lines '$TAIL_LINES'"
  if [[ -n $HOST ]]; then
    run ssh -t "$HOST" "$(logs_script)"
  else
    run bash -c "$(logs_script)"
  fi
}

do_fetch() {
  need "$WORKDIR" --workdir
  local dest=${DEST:-workdirs/$(basename "$WORKDIR")}
  if is_gs "$WORKDIR"; then
    run mkdir -p "$dest"
    run gcloud storage rsync --recursive "$WORKDIR" "$dest"
  elif [[ -z $HOST ]]; then
    die "--workdir '$WORKDIR' is already on this machine; fetch needs --host or a gs:// workdir"
  else
    local src=$WORKDIR
    # shellcheck disable=SC2088  # a literal ~/ prefix given by the user
    case $src in
      /*) ;;
      '~/'*) src=${src#\~/} ;;
      *) src=${REMOTE_DIR#\~/}/$src ;;
    esac
    run mkdir -p "$(dirname "$dest")"
    run scp -r "$HOST:$src" "$dest"
  fi
}

case $CMD in
  install) do_install ;;
  run) do_run ;;
  up)
    need "$CONFIG" --config
    need "$WORKDIR" --workdir
    do_install
    do_run ;;
  logs) do_logs ;;
  stop) on_host "$(stop_script)" ;;
  fetch) do_fetch ;;
esac
