"""Tests for the launch scripts in launch/ (fast; no gcloud, ssh or GPU needed).

The --dry-run tests check the printed commands. The round-trip tests put fake
`gcloud`, `ssh` and `scp` on PATH that run the remote script with bash here, so
the quoting of the remote commands, nohup, the pid file, the log and SIGTERM
handling are exercised for real against a stub eeprune_jax.main.
"""
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
LAUNCH = ROOT / "launch"
TPU = LAUNCH / "tpu_vm.sh"
GPU = LAUNCH / "gpu.sh"
# Every shell script of the repo: the launchers and the GPU benchmark recipes.
SCRIPTS = sorted([*LAUNCH.glob("*.sh"), *(LAUNCH.parent / "benchmarks").glob("*.sh")])
TPU_BASE = ["--name=my-tpu", "--zone=us-central2-b"]


def sh(script, *args, env=None, timeout=30):
    return subprocess.run(
        ["bash", str(script), *args], capture_output=True, text=True,
        env=env, timeout=timeout, cwd=ROOT)


def dry(script, *args):
    # --dry-run goes first: everything after a bare -- belongs to eeprune_jax.main.
    r = sh(script, "--dry-run", *args)
    assert r.returncode == 0, r.stderr
    return r.stdout.splitlines()


def test_scripts_exist_and_are_executable():
    assert TPU.exists() and GPU.exists()
    for s in (TPU, GPU):
        assert os.access(s, os.X_OK), s
        assert s.read_text().startswith("#!/usr/bin/env bash\n")
        assert "set -euo pipefail" in s.read_text()


@pytest.mark.parametrize("script", [TPU, GPU])
def test_help(script):
    r = sh(script, "--help")
    assert r.returncode == 0
    assert "Usage:" in r.stdout and "--dry-run" in r.stdout and "--config" in r.stdout


# ---------------------------------------------------------------- tpu_vm.sh
def test_tpu_up_single_host_dry_run():
    lines = dry(TPU, "up", *TPU_BASE, "--accelerator-type=v4-8",
                "--config=configs/cifar100.py", "--workdir=gs://bkt/runs/c100",
                "--config.train.num_epochs=200", "--spot")
    assert lines[0] == ("gcloud compute tpus tpu-vm create my-tpu --zone=us-central2-b "
                        "--accelerator-type=v4-8 --version=tpu-ubuntu2204-base --spot")
    assert lines[1].startswith("tar -czf ")
    assert lines[2].startswith("gcloud compute tpus tpu-vm scp ")
    assert "my-tpu:eeprune-jax-src.tar.gz" in lines[2] and "--worker=all" in lines[2]
    install, run = lines[3], lines[4]
    assert install.startswith("gcloud compute tpus tpu-vm ssh my-tpu --zone=us-central2-b --worker=all --command=")
    assert '-e ".[gcs]" "jax[tpu]"' in install
    assert run.startswith("gcloud compute tpus tpu-vm ssh my-tpu --zone=us-central2-b --worker=all --command=")
    assert "nohup " in run and ">> \"$HOME\"/eeprune-run.log 2>&1" in run
    assert ("-m eeprune_jax.main --config=configs/cifar100.py "
            "--workdir=gs://bkt/runs/c100 --config.train.num_epochs=200") in run
    assert len(lines) == 5


def test_tpu_pod_gs_data_and_workdir_dry_run():
    lines = dry(TPU, "run", *TPU_BASE, "--project=proj", "--multihost", "--config", "configs/imagenet.py",
                "--workdir=gs://bkt/runs/in1k", "--data_dir=gs://bkt/tfds",
                "--config.train.batch_size=4096", "--", "--alsologtostderr")
    assert len(lines) == 1
    (run,) = lines
    assert "--worker=all" in run and "--project=proj" in run
    assert ("--config=configs/imagenet.py --workdir=gs://bkt/runs/in1k "
            "--config.data.data_dir=gs://bkt/tfds --multihost --config.train.batch_size=4096 "
            "--alsologtostderr") in run
    assert "--multihost" not in dry(TPU, "run", *TPU_BASE, "--accelerator-type=v4-8",
                                    "--config=configs/c.py", "--workdir=w")[0]
    assert "--multihost" in dry(TPU, "run", *TPU_BASE, "--accelerator-type=v4-32",
                                "--config=configs/c.py", "--workdir=w")[0]


@pytest.mark.parametrize("accel,version", [
    ("v4-32", "tpu-ubuntu2204-base"), ("v5litepod-8", "v2-alpha-tpuv5-lite"),
    ("v5p-8", "v2-alpha-tpuv5"), ("v6e-8", "v2-alpha-tpuv6e")])
def test_tpu_create_runtime_defaults(accel, version):
    (line,) = dry(TPU, "create", *TPU_BASE, f"--accelerator-type={accel}", "--preemptible")
    assert f"--accelerator-type={accel} --version={version} --preemptible" in line
    (line,) = dry(TPU, "create", *TPU_BASE, f"--accelerator-type={accel}", "--version=my-rt")
    assert line.endswith(f"--accelerator-type={accel} --version=my-rt")


def test_tpu_install_from_git_dry_run():
    (line,) = dry(TPU, "install", *TPU_BASE, "--git-url=https://example.com/eeprune-jax.git",
                  "--git-ref=v0.1.0")
    assert "--worker=all" in line
    assert "git clone https://example.com/eeprune-jax.git" in line
    assert "fetch origin v0.1.0" in line and 'pip install' in line


def test_tpu_logs_fetch_stop_delete_dry_run():
    (logs,) = dry(TPU, "logs", *TPU_BASE)
    assert "--worker=0" in logs and "tail -n 200 -F" in logs
    gs = dry(TPU, "fetch", *TPU_BASE, "--workdir=gs://bkt/runs/c100", "--dest=out/c100")
    assert gs == ["mkdir -p out/c100", "gcloud storage rsync --recursive gs://bkt/runs/c100 out/c100"]
    local = dry(TPU, "fetch", *TPU_BASE, "--workdir=runs/c100")
    assert local[-1] == ("gcloud compute tpus tpu-vm scp --recurse my-tpu:eeprune-jax/runs/c100 "
                         "workdirs/c100 --zone=us-central2-b --worker=0")
    (stop,) = dry(TPU, "stop", *TPU_BASE)
    assert "--worker=all" in stop and "kill -TERM" in stop
    assert dry(TPU, "delete", *TPU_BASE, "--yes") == [
        "gcloud compute tpus tpu-vm delete my-tpu --zone=us-central2-b --quiet"]


@pytest.mark.parametrize("args,needle", [
    (["run", *TPU_BASE, "--workdir=gs://b/w"], "--config"),
    (["run", *TPU_BASE, "--config=configs/demo.py"], "--workdir"),
    (["run", "--zone=z", "--config=configs/demo.py", "--workdir=w"], "--name"),
    (["create", "--name=n", "--accelerator-type=v4-8"], "--zone"),
    (["create", *TPU_BASE], "--accelerator-type"),
    (["create", *TPU_BASE, "--accelerator-type=tpu8"], "--accelerator-type"),
    (["create", *TPU_BASE, "--accelerator-type=v9-8"], "--version"),
    (["create", *TPU_BASE, "--accelerator-type=v4-8", "--spot", "--preemptible"], "--spot"),
    (["run", *TPU_BASE, "--bogus=1"], "--bogus"),
    (["run", *TPU_BASE, "--zone"], "--zone"),
    (["run", *TPU_BASE, "--config="], "--config"),
    (["run", *TPU_BASE, "--config=configs/demo.yaml", "--workdir=w"], "--config"),
    (["run", *TPU_BASE, "--spot=yes"], "--spot"),
    (["launch", *TPU_BASE], "launch"),
    (TPU_BASE, "COMMAND"),
    (["fetch", *TPU_BASE], "--workdir"),
    (["logs", *TPU_BASE, "--worker=all"], "--worker"),
])
def test_tpu_bad_flags(args, needle):
    r = sh(TPU, "--dry-run", *args)
    assert r.returncode != 0
    assert needle in r.stderr, r.stderr
    assert r.stdout == ""


# ------------------------------------------------------------------ gpu.sh
def test_gpu_up_remote_dry_run():
    lines = dry(GPU, "up", "--host=me@gpubox", "--config=configs/cifar10.py",
                "--workdir=gs://bkt/runs/c10", "--gpus=0,1,2,3", "--config.train.batch_size=512")
    assert lines[0].startswith("tar -czf ")
    assert lines[1] == "scp /tmp/eeprune-jax-src.tar.gz me@gpubox:eeprune-jax-src.tar.gz" or \
        lines[1].startswith("scp ") and lines[1].endswith(" me@gpubox:eeprune-jax-src.tar.gz")
    assert lines[2].startswith("ssh me@gpubox ") and '-e ".[gcs]" "jax[cuda12]"' in lines[2]
    run = lines[3]
    assert run.startswith("ssh me@gpubox ") and "nohup " in run
    assert "CUDA_VISIBLE_DEVICES=0,1,2,3" in run
    assert ("-m eeprune_jax.main --config=configs/cifar10.py --workdir=gs://bkt/runs/c10 "
            "--config.train.batch_size=512") in run
    assert len(lines) == 4


def test_gpu_local_dry_run():
    (install,) = dry(GPU, "install", "--jax-extra=cuda13")
    assert install.startswith("bash -c ") and '"jax[cuda13]"' in install
    assert f"cd {ROOT};" in install
    (run,) = dry(GPU, "run", "--config=configs/kmnist.py", "--workdir=/tmp/kmnist",
                 "--data-dir=/data/tfds", "--config.seed=3")
    assert run.startswith("bash -c ")
    assert ("--config=configs/kmnist.py --workdir=/tmp/kmnist "
            "--config.data.data_dir=/data/tfds --config.seed=3") in run
    (logs,) = dry(GPU, "logs", "--host=me@gpubox", "--lines=50")
    assert logs.startswith("ssh -t me@gpubox ") and "tail -n 50 -F" in logs
    assert dry(GPU, "fetch", "--host=me@gpubox", "--workdir=runs/x")[-1] == \
        "scp -r me@gpubox:eeprune-jax/runs/x workdirs/x"


@pytest.mark.parametrize("args,needle", [
    (["run", "--workdir=w"], "--config"),
    (["run", "--config=configs/demo.py"], "--workdir"),
    (["run", "--config=configs/demo.py", "--workdir=w", "--gpus=all"], "--gpus"),
    (["install", "--jax-extra=cuda11"], "--jax-extra"),
    (["install", "--git-url=https://x/y.git"], "--host"),
    (["fetch", "--workdir=/tmp/w"], "--host"),
    (["run", "--nope"], "--nope"),
    (["run", "--host"], "--host"),
    ([], "COMMAND"),
])
def test_gpu_bad_flags(args, needle):
    r = sh(GPU, "--dry-run", *args)
    assert r.returncode != 0
    assert needle in r.stderr, r.stderr


# ---------------------------------------------------------------- shellcheck
@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_shellcheck():
    r = subprocess.run(["shellcheck", "-x", *map(str, SCRIPTS)], capture_output=True,
                       text=True, cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr


# ------------------------------------------- round trip through fake gcloud/ssh
STUB_MAIN = r'''
import os, pathlib, signal, sys, time
home = pathlib.Path(os.environ["HOME"])
(home / "argv.txt").write_text("\n".join(sys.argv[1:]) + "\n" + os.getcwd())
def term(*_):
    (home / "sigterm.txt").write_text("checkpoint saved")
    sys.exit(0)
signal.signal(signal.SIGTERM, term)
print("training", flush=True)
for _ in range(600):
    time.sleep(0.1)
'''

FAKE_GCLOUD = r'''#!/usr/bin/env bash
echo "gcloud $*" >> "$HOME/calls.txt"
for a in "$@"; do
  case $a in --command=*) cd "$HOME" && exec bash -c "${a#--command=}" ;; esac
done
'''

FAKE_SSH = r'''#!/usr/bin/env bash
echo "ssh $*" >> "$HOME/calls.txt"
cd "$HOME" && exec bash -c "${@: -1}"
'''


@pytest.fixture
def fake_host(tmp_path):
    home = tmp_path / "home"
    proj = home / "eeprune-jax" / "eeprune_jax"
    proj.mkdir(parents=True)
    (proj / "__init__.py").write_text("")
    (proj / "main.py").write_text(STUB_MAIN)
    venv_bin = home / "eeprune-venv" / "bin"
    venv_bin.mkdir(parents=True)
    (venv_bin / "python").symlink_to(sys.executable)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for name, text in (("gcloud", FAKE_GCLOUD), ("ssh", FAKE_SSH)):
        (bindir / name).write_text(text)
        (bindir / name).chmod(0o755)
    env = dict(os.environ, HOME=str(home), PATH=f"{bindir}:{os.environ['PATH']}")
    yield home, env
    pid_file = home / "eeprune-run.pid"
    if pid_file.exists():  # make sure the stub we started is gone
        try:
            os.kill(int(pid_file.read_text()), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass


def wait_for(path, timeout=20.0):
    end = time.time() + timeout
    while time.time() < end:
        if path.exists() and path.read_text():
            return path.read_text()
        time.sleep(0.05)
    raise AssertionError(f"{path} did not appear")


@pytest.mark.parametrize("script,target", [(TPU, TPU_BASE), (GPU, ["--host=me@box"])])
def test_run_and_stop_round_trip(fake_host, script, target):
    home, env = fake_host
    odd = "--config.model.name=res net's \"x\" $HOME"
    r = sh(script, "run", *target, "--config=configs/demo.py", "--workdir=gs://bkt/w",
           "--data_dir=gs://bkt/data", odd, env=env)
    assert r.returncode == 0, r.stderr
    argv = wait_for(home / "argv.txt").splitlines()
    assert argv == ["--config=configs/demo.py", "--workdir=gs://bkt/w",
                    "--config.data.data_dir=gs://bkt/data", odd, str(home / "eeprune-jax")]
    assert "training" in wait_for(home / "eeprune-run.log")
    pid = int((home / "eeprune-run.pid").read_text())
    os.kill(pid, 0)  # running, in the background, after the launcher returned
    again = sh(script, "run", *target, "--config=configs/demo.py", "--workdir=gs://bkt/w", env=env)
    assert again.returncode != 0 and "already running" in again.stdout + again.stderr
    r = sh(script, "stop", *target, env=env)
    assert r.returncode == 0, r.stderr
    assert wait_for(home / "sigterm.txt") == "checkpoint saved"
    calls = (home / "calls.txt").read_text()
    if script == TPU:
        assert "--worker=all" in calls


# ------------------------------------------ real gcloud: flags parse (no account)
@pytest.mark.skipif(shutil.which("gcloud") is None, reason="gcloud is not installed")
def test_gcloud_accepts_generated_flags(tmp_path):
    """Each printed gcloud command is handed to the real gcloud with an empty
    config folder, so there is no account and nothing can be created: gcloud
    parses the flags first (an unknown flag fails with 'unrecognized
    arguments') and only then stops for the missing account."""
    lines = []
    lines += dry(TPU, "up", *TPU_BASE, "--accelerator-type=v4-32", "--spot",
                 "--config=configs/imagenet.py", "--workdir=gs://b/w", "--data-dir=gs://b/d")
    lines += dry(TPU, "create", *TPU_BASE, "--accelerator-type=v5litepod-8", "--preemptible")
    lines += dry(TPU, "logs", *TPU_BASE)
    lines += dry(TPU, "fetch", *TPU_BASE, "--workdir=runs/x")
    lines += dry(TPU, "fetch", *TPU_BASE, "--workdir=gs://b/w")
    lines += dry(TPU, "delete", *TPU_BASE, "--yes")
    gcloud_lines = [l for l in lines if l.startswith("gcloud ")]
    assert len(gcloud_lines) >= 8
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CLOUDSDK_", "GOOGLE_", "GCE_"))}
    env.update(CLOUDSDK_CONFIG=str(tmp_path / "gcloud-config"),
               CLOUDSDK_CORE_DISABLE_PROMPTS="1", CLOUDSDK_CORE_PROJECT="no-such-project")
    for line in gcloud_lines:
        r = subprocess.run(["bash", "-c", line], capture_output=True, text=True, env=env,
                           stdin=subprocess.DEVNULL, timeout=120, cwd=tmp_path)
        out = r.stdout + r.stderr
        assert r.returncode != 0
        assert "unrecognized arguments" not in out and "argument" not in out.split("\n")[0], (line, out)
        assert "active account" in out, (line, out)
