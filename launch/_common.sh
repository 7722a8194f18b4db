# shellcheck shell=bash
# The remote scripts below are built as strings for the remote shell, so "$HOME"
# and '~' are meant literally here:
# shellcheck disable=SC2016,SC2088
# Helpers shared by launch/tpu_vm.sh and launch/gpu.sh. Sourced, never run.

# The repository root (the parent of launch/).
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# Files and folders left out of the source tarball that is copied to the hosts.
# shellcheck disable=SC2034  # used by the scripts that source this file
TAR_EXCLUDES=(--exclude=.git --exclude=.venv --exclude=venv --exclude=__pycache__
  --exclude='*.egg-info' --exclude=.pytest_cache --exclude=runs --exclude=workdirs
  --exclude=.whl)
DRY_RUN=0

# die MESSAGE: print an error naming the problem and exit 2.
die() {
  echo "${PROG}: error: $*" >&2
  echo "Run '${PROG} --help' for usage." >&2
  exit 2
}

warn() { echo "${PROG}: warning: $*" >&2; }

# q WORD: WORD quoted for a POSIX shell (left bare when it is safe;
# --flag=VALUE is printed as --flag='VALUE').
q() {
  local s=$1
  if [[ -n $s && $s =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]]; then
    printf '%s' "$s"
  elif [[ $s =~ ^(--[A-Za-z0-9_.-]+=)(.+)$ ]]; then
    printf '%s' "${BASH_REMATCH[1]}"
    q "${BASH_REMATCH[2]}"
  else
    printf "'%s'" "${s//\'/\'\\\'\'}"
  fi
}

# join_q WORD...: the words quoted and joined by spaces.
join_q() {
  local out="" w
  for w in "$@"; do out+="${out:+ }$(q "$w")"; done
  printf '%s' "$out"
}

# home_path PATH: PATH for a remote shell; relative paths and ~/ are taken
# from the user's home directory.
home_path() {
  local p=$1
  case $p in
    /*) q "$p" ;;
    '~') printf '"$HOME"' ;;
    '~/'*) printf '"$HOME"/%s' "$(q "${p#\~/}")" ;;
    *) printf '"$HOME"/%s' "$(q "$p")" ;;
  esac
}

# run CMD...: with --dry-run print the command on one line, else echo it to
# stderr and run it.
run() {
  if ((DRY_RUN)); then
    printf '%s\n' "$(join_q "$@")"
  else
    printf '+ %s\n' "$(join_q "$@")" >&2
    "$@"
  fi
}

is_gs() { [[ $1 == gs://* ]]; }

# check_config PATH: warn when the config file is not in this checkout.
check_config() {
  local c=${1%%:*}
  [[ $c == *.py ]] || die "--config must name a Python config file (configs/<name>.py), got '$1'"
  if [[ $c != /* && ! -f $REPO_ROOT/$c ]]; then
    warn "config '$c' is not in this checkout ($REPO_ROOT); it must exist on the host"
  fi
}

# main_args: the eeprune_jax.main command line (python path not included).
# Uses CONFIG, WORKDIR, DATA_DIR and OVERRIDES.
main_cmd() {
  local py=$1 wd
  if is_gs "$WORKDIR" || [[ $WORKDIR == /* ]]; then
    wd=$(q "--workdir=$WORKDIR")
  elif [[ $WORKDIR == '~/'* ]]; then
    wd="--workdir=\"\$HOME\"/$(q "${WORKDIR#\~/}")"
  else
    wd=$(q "--workdir=$WORKDIR")
  fi
  local args=("--config=$CONFIG")
  [[ -n $DATA_DIR ]] && args+=("--config.data.data_dir=$DATA_DIR")
  printf '%s -m eeprune_jax.main %s %s' "$py" "$(join_q "${args[0]}")" "$wd"
  local rest=("${args[@]:1}" "${OVERRIDES[@]}")
  ((${#rest[@]})) && printf ' %s' "$(join_q "${rest[@]}")"
  return 0
}

# install_script JAX_REQ: the shell script a host runs to unpack or clone the
# project and pip install it with JAX_REQ into the venv. Uses GIT_URL,
# GIT_REF, REMOTE_DIR, VENV, PY_VERSION, SRC_TARBALL (remote name).
install_script() {
  local req=$1 d v
  d=$(home_path "$REMOTE_DIR")
  v=$(home_path "$VENV")
  local s="set -e; "
  if [[ -n $GIT_URL ]]; then
    s+="[ -d $d/.git ] || git clone $(q "$GIT_URL") $d; "
    s+="git -C $d fetch origin $(q "$GIT_REF"); git -C $d checkout --detach FETCH_HEAD; "
  elif [[ -n ${SRC_TARBALL:-} ]]; then
    s+="mkdir -p $d; tar -xzf $(home_path "$SRC_TARBALL") -C $d; "
  fi
  s+='export PATH="$HOME/.local/bin:$PATH"; '
  s+='command -v uv >/dev/null || curl -LsSf https://astral.sh/uv/install.sh | sh; '
  s+="[ -x $v/bin/python ] || uv venv --python $(q "$PY_VERSION") $v; "
  s+="cd $d; uv pip install --python $v/bin/python -e \".[gcs]\" \"$req\"; "
  s+="$v/bin/python -c \"import jax; print(jax.device_count(), jax.devices())\""
  printf '%s' "$s"
}

# run_script: the shell script a host runs to start the job in the background.
# Uses REMOTE_DIR, VENV, LOG_FILE, PID_FILE, ENV_PREFIX and main_cmd's inputs.
run_script() {
  local d v log pid
  d=$(home_path "$REMOTE_DIR")
  v=$(home_path "$VENV")
  log=$(home_path "$LOG_FILE")
  pid=$(home_path "$PID_FILE")
  local s=""
  s+="if [ -f $pid ] && kill -0 \"\$(cat $pid)\" 2>/dev/null; then "
  s+="echo \"eeprune_jax.main is already running (pid \$(cat $pid))\" >&2; exit 1; fi; "
  s+="mkdir -p \"\$(dirname $log)\"; cd $d || exit 1; "
  s+="nohup env PYTHONUNBUFFERED=1${ENV_PREFIX:+ $ENV_PREFIX} $(main_cmd "$v/bin/python") "
  s+=">> $log 2>&1 < /dev/null & echo \$! > $pid; "
  s+="echo \"started eeprune_jax.main, pid \$(cat $pid), on \$(hostname)\""
  printf '%s' "$s"
}

logs_script() { printf 'tail -n %s -F %s' "$(q "$TAIL_LINES")" "$(home_path "$LOG_FILE")"; }

# Sends SIGTERM (the job checkpoints and exits) to the pid the run step saved.
stop_script() {
  local pid
  pid=$(home_path "$PID_FILE")
  printf '%s' "if [ -f $pid ] && kill -0 \"\$(cat $pid)\" 2>/dev/null; then kill -TERM \"\$(cat $pid)\" && echo \"sent SIGTERM to \$(cat $pid) on \$(hostname)\"; else echo \"no running job on \$(hostname)\"; fi"
}
