#!/usr/bin/env python3
"""End-to-end tests of the service with real processes on loopback: qnetd, qnet-worker serve and
the qnet CLI, on a tiny synthetic IDX dataset (service_make_idx.py). Every wait is bounded and
every process started is stopped.

    service_e2e_test.py SCENARIO --qnetd PATH --worker PATH --qnet PATH

Scenarios:
  happy        submit --wait --json completes a job on one local worker; every artifact downloads
               and matches its digest; list/get show it; a repeated request id returns the job
  cancel       cancel a queued job (no workers) and a running one (watch exits 1, CANCELLED)
  bad          bad submissions exit non-zero with a message (2 for refused input); qnetd lives on
  kill-worker  kill -9 of the worker mid-training; a second worker resumes from the checkpoint and
               the job SUCCEEDS at attempt 2
  auth         with --auth-tokens: tokenless and client-token workers and a tokenless CLI are
               refused; a client's job runs on a worker identity and on a local worker; another
               client neither sees, cancels nor downloads it
  sandbox      a TorchScript model whose forward allocates without bound fails its job at the
               worker's --sandbox-memory-mib, at attempt 1 (not retried); the worker then completes
               the next job
  http-auth    (no worker needed) HTTP with --auth-tokens: no token is 401, a wrong role 403, a
               client sees only its jobs in /api; --audit-log holds the submits and cancels with
               who and outcome; then HTTPS (a test CA from the openssl command line) with tokens
               and client certificates, and no answer to plain HTTP
  quota        (no worker) with --auth-tokens and small quotas: a client's third queued job and an
               upload past its bytes are refused naming the limit and the use; `qnet delete`
               refuses a queued job, deletes it once cancelled, and another client cannot; a
               client's uploaded dataset is neither listed nor usable by another one
"""
import argparse
import hashlib
import http.client
import json
import os
import ssl
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import service_make_idx  # noqa: E402


class Failure(Exception):
    pass


def check(condition, message):
    if not condition:
        raise Failure(message)


class Env:
    """Processes and paths of one scenario; close() stops everything it started."""

    def __init__(self, args, tmp: pathlib.Path):
        self.args = args
        self.tmp = tmp
        self.procs = []
        self.grpc = None
        self.http = None

    def start_qnetd(self, *extra, n_train=256, n_test=128):
        data = self.tmp / "synth"
        if not data.exists():
            service_make_idx.main(["make_idx", str(data), str(n_train), str(n_test)])
        log = self.tmp / f"qnetd.{len(self.procs)}.log"
        cmd = [self.args.qnetd, "--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0",
               "--data-dir", str(self.tmp / "srv"), "--dataset", f"synth=idx:{data}",
               *(["--worker-binary", self.args.worker] if self.args.worker else []), *extra]
        proc = self.spawn(cmd, log)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            m = re.search(r"listening grpc=(\S+) http=(\S+)", log.read_text())
            if m:
                self.grpc, self.http = m.group(1), m.group(2)
                return proc
            check(proc.poll() is None, f"qnetd exited: {log.read_text()[-800:]}")
            time.sleep(0.1)
        raise Failure("qnetd printed no 'listening grpc=... http=...' line within 60 s")

    def start_worker(self, name, *extra):
        log = self.tmp / f"{name}.log"
        cmd = [self.args.worker, "serve", "--server", self.grpc, "--cache-dir",
               str(self.tmp / f"cache-{name}"), "--worker-id", name, "--device", "cpu",
               "--heartbeat-seconds", "0.5", "--lease-wait-seconds", "2", *extra]
        return self.spawn(cmd, log)

    def spawn(self, cmd, log_path):
        log = open(log_path, "w")
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self.procs.append(proc)
        return proc

    def qnet(self, *args, timeout=60, token=None):
        """Runs the CLI (as the identity of `token`); returns (exit code, stdout, stderr)."""
        env = dict(os.environ, QNET_SERVER=self.grpc)
        env.pop("QNET_TOKEN", None)
        if token:
            env["QNET_TOKEN"] = token
        r = subprocess.run([self.args.qnet, *args], capture_output=True, text=True, env=env,
                           timeout=timeout)
        return r.returncode, r.stdout, r.stderr

    def qnet_json(self, *args, timeout=60, token=None):
        rc, out, err = self.qnet(*args, "--json", timeout=timeout, token=token)
        check(rc == 0, f"qnet {' '.join(args)} --json exited {rc}: {err.strip()[-500:]}")
        try:
            return json.loads(out)
        except json.JSONDecodeError:
            raise Failure(f"qnet {' '.join(args)} --json printed non-JSON: {out[:300]!r}")

    def wait_for(self, what, predicate, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.2)
        raise Failure(f"timed out after {timeout} s waiting for {what}")

    def close(self):
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in reversed(self.procs):
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def logs(self):
        text = []
        for log in sorted(self.tmp.glob("*.log")):
            text.append(f"--- {log.name} (tail) ---\n" + "\n".join(
                log.read_text(errors="replace").splitlines()[-25:]))
        return "\n".join(text)


TINY = ["--model", "zoo:lenet5", "--dataset", "synth", "--weight-bits", "2", "--activation-bits",
        "2", "--pretrain-epochs", "1", "--epochs", "1", "--max-train-samples", "256"]


def sha256_file(path):
    return "sha256:" + hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()


def scenario_happy(env: Env):
    env.start_qnetd("--local-workers", "1")
    rc, out, err = env.qnet("submit", *TINY, "--request-id", "e2e-happy", "--wait", "--json",
                            timeout=600)
    check(rc == 0, f"submit --wait exited {rc}: {err.strip()[-800:]}")
    job = json.loads(out)  # stdout carries only the final job
    check(job["state"] == "SUCCEEDED", f"job state {job['state']}: {job.get('error')}")
    check(job["attempt"] == 1, f"attempt {job['attempt']}")
    check(job["metrics"]["quantized_top1"] > 0, "no quantized_top1")
    check("float" in err and "quantized" in err, "no accuracy table on stderr")
    # Parity, measured in the sandboxed engine: model.onnx run by ONNX Runtime scores what
    # model.pt scores (to rounding on a few borderline images).
    metrics = job["metrics"]
    check("onnx_top1" in metrics and "torchscript_top1" in metrics,
          f"no parity figures in {sorted(metrics)}")
    check(abs(metrics["onnx_top1"] - metrics["torchscript_top1"]) <= 0.02,
          f"ONNX Runtime {metrics['onnx_top1']} against TorchScript {metrics['torchscript_top1']}")
    check("model.onnx top-1" in err, "no ONNX Runtime row in the accuracy table")
    artifacts = job["artifacts"]
    check(len(artifacts) >= 3, f"only {len(artifacts)} artifacts")

    out_dir = env.tmp / "art"
    rc, out, err = env.qnet("download", job["id"], "-o", str(out_dir), timeout=120)
    check(rc == 0, f"download exited {rc}: {err.strip()}")
    on_disk = {sha256_file(p) for p in out_dir.iterdir() if p.is_file()}
    missing = [a["digest"] for a in artifacts if a["digest"] not in on_disk]
    check(not missing, f"artifact digests without a matching download: {missing}")

    rc, out, err = env.qnet("download", job["id"], "-o", str(env.tmp / "onnx"), "--format", "onnx")
    check(rc == 0 and list((env.tmp / "onnx").iterdir()), f"--format onnx: {rc} {err.strip()}")

    listed = env.qnet_json("list")["jobs"]
    check(job["id"] in [j["id"] for j in listed], "job not in list --json")
    got = env.qnet_json("get", job["id"])
    check(got["metrics"]["epochs"], "no per-epoch metrics in the stored job")
    again = env.qnet_json("submit", *TINY, "--request-id", "e2e-happy")
    check(again["id"] == job["id"], f"request id re-submit gave {again['id']}, not {job['id']}")
    rc, out, _ = env.qnet("get", job["id"])
    check(rc == 0 and "SUCCEEDED" in out and "top-1" in out, f"human get output: {out}")
    print(f"happy: job {job['id']} SUCCEEDED, {len(artifacts)} artifacts verified, "
          f"quantized_top1={job['metrics']['quantized_top1']:.3f}")


def scenario_cancel(env: Env):
    env.start_qnetd("--local-workers", "0")
    queued = env.qnet_json("submit", *TINY)
    check(queued["state"] == "QUEUED", f"new job is {queued['state']}")
    rc, out, err = env.qnet("cancel", queued["id"])
    check(rc == 0, f"cancel exited {rc}: {err}")
    check(env.qnet_json("get", queued["id"])["state"] == "CANCELLED", "queued job not CANCELLED")
    rc, _, _ = env.qnet("watch", queued["id"], timeout=30)
    check(rc == 1, f"watch of a cancelled job exited {rc}, want 1")

    long_job = [*TINY[:-6], "--pretrain-epochs", "1", "--epochs", "200", "--max-train-samples",
                "256"]
    running = env.qnet_json("submit", *long_job)
    env.start_worker("w1")
    env.wait_for("the job to run", lambda: env.qnet_json("get", running["id"])["state"] ==
                 "RUNNING", 120)
    env.wait_for("training progress", lambda: env.qnet_json("get", running["id"])["progress"][
        "epoch"] >= 1, 120)
    started = time.monotonic()
    rc, out, err = env.qnet("cancel", running["id"])
    check(rc == 0, f"cancel of a running job exited {rc}: {err}")
    rc, _, err = env.qnet("watch", running["id"], timeout=60)
    check(rc == 1, f"watch of the cancelled running job exited {rc}: {err.strip()[-300:]}")
    final = env.qnet_json("get", running["id"])
    check(final["state"] == "CANCELLED", f"running job ended {final['state']}: {final['error']}")
    print(f"cancel: queued and running jobs CANCELLED (running one in "
          f"{time.monotonic() - started:.1f} s)")


def scenario_bad(env: Env):
    env.start_qnetd("--local-workers", "0")
    garbage = env.tmp / "garbage.pt"
    garbage.write_bytes(os.urandom(100000))
    cases = [
        ("unknown dataset", ["--model", "zoo:lenet5", "--dataset", "no-such-data",
                             "--weight-bits", "2"], 2),
        ("bits 0", ["--model", "zoo:lenet5", "--dataset", "synth", "--weight-bits", "0"], 2),
        ("bits 33", ["--model", "zoo:lenet5", "--dataset", "synth", "--weight-bits", "33"], 2),
        ("unknown zoo", ["--model", "zoo:no-such-net", "--dataset", "synth", "--weight-bits", "2"],
         2),
        ("path dataset", ["--model", "zoo:lenet5", "--dataset", "../../etc/passwd",
                          "--weight-bits", "2"], 2),
        ("missing model file", ["--model", str(env.tmp / "nope.pt"), "--dataset", "synth",
                                "--weight-bits", "2"], 2),
        ("garbage .pt", ["--model", str(garbage), "--dataset", "synth", "--weight-bits", "2"], 2),
        ("bad levels", ["--model", "zoo:lenet5", "--dataset", "synth", "--weight-levels", "a,b"],
         2),
        ("bad flag value", ["--model", "zoo:lenet5", "--dataset", "synth", "--weight-bits", "x"],
         2),
    ]
    problems = []
    for name, args, want in cases:
        rc, out, err = env.qnet("submit", *args)
        if rc != want:
            problems.append(f"{name}: exit {rc} (want {want})")
        if not err.strip():
            problems.append(f"{name}: no message")
    rc, _, err = env.qnet("get", "no-such-job")
    if rc != 2 or "no-such-job" not in err:
        problems.append(f"get unknown job: exit {rc}, {err.strip()}")
    check(not problems, "; ".join(problems))
    env.qnet_json("list")
    check(env.procs[0].poll() is None, "qnetd died")
    check(env.qnet_json("list")["jobs"] == [], "a bad submission created a job")
    print(f"bad: {len(cases)} bad submissions refused with messages; qnetd alive")


def scenario_kill_worker(env: Env):
    env.start_qnetd("--local-workers", "0", "--lease-seconds", "3", n_train=2048)
    job = env.qnet_json("submit", "--model", "zoo:lenet5", "--dataset", "synth", "--weight-bits",
                        "2", "--pretrain-epochs", "1", "--epochs", "4", "--max-train-samples",
                        "2048", "--batch-size", "64")
    w1 = env.start_worker("w1")
    env.wait_for("epoch 2 on the first worker", lambda: env.qnet_json("get", job["id"])[
        "progress"]["epoch"] >= 2, 300)
    snapshot = env.qnet_json("get", job["id"])
    check(snapshot["checkpoint_digest"], "no checkpoint recorded after the first epoch")
    w1.send_signal(signal.SIGKILL)
    w1.wait()
    env.start_worker("w2")
    rc, _, err = env.qnet("watch", job["id"], timeout=600)
    final = env.qnet_json("get", job["id"])
    check(rc == 0 and final["state"] == "SUCCEEDED",
          f"after kill -9: watch exit {rc}, state {final['state']}: {final['error']}")
    check(final["attempt"] == 2, f"attempt {final['attempt']}, want 2")
    check(final["worker_id"] in ("", "w2"), f"finished by {final['worker_id']}")
    w2_log = (env.tmp / "w2.log").read_text()
    resumed = re.search(r"resuming from ckpt-(\d+)\.pt", w2_log)
    check(resumed, "the second worker did not unpack the first one's checkpoint")
    # The engine really continued: the second worker's first checkpoint is a later epoch.
    uploads = [int(n) for n in re.findall(r"checkpoint ckpt-(\d+)\.pt uploaded", w2_log)]
    check(uploads and uploads[0] > int(resumed.group(1)),
          f"the engine restarted instead of resuming from ckpt-{resumed.group(1)}.pt (second "
          f"worker's checkpoints: {uploads}); its checkpoint fingerprint must not depend on "
          f"worker-local paths (cache directories differ between workers)")
    print(f"kill-worker: job {job['id']} SUCCEEDED at attempt 2, resumed after epoch "
          f"{resumed.group(1)}")


def new_identity(env: Env, name, role):
    """`qnetd token`: returns (token, tokens-file line)."""
    r = subprocess.run([env.args.qnetd, "token", "--name", name, "--role", role],
                       capture_output=True, text=True, timeout=30)
    check(r.returncode == 0, f"qnetd token exited {r.returncode}: {r.stderr}")
    token, line = r.stdout.splitlines()
    return token, line


def scenario_auth(env: Env):
    identities = {name: new_identity(env, name, role)
                  for name, role in [("alice", "client"), ("bob", "client"), ("gpu", "worker")]}
    tokens_file = env.tmp / "tokens"
    tokens_file.write_text("".join(line + "\n" for _, line in identities.values()))
    alice, bob, gpu = (identities[n][0] for n in ("alice", "bob", "gpu"))
    (env.tmp / "gpu-token").write_text(gpu + "\n")
    (env.tmp / "alice-token").write_text(alice + "\n")
    qnetd = env.start_qnetd("--local-workers", "0", "--auth-tokens", str(tokens_file))

    # Workers without a token, or with a client's, stop at once and say why.
    for name, extra, expected in [("no-token", [], "requires a token"),
                                  ("client-token", ["--token-file", str(env.tmp / "alice-token")],
                                   "may not call /qnet.v1.WorkerService/AcquireLease")]:
        proc = env.start_worker(name, *extra)
        try:
            rc = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            raise Failure(f"worker {name} kept running against an authenticating server")
        text = (env.tmp / f"{name}.log").read_text()
        check(rc != 0, f"worker {name} exited 0")
        check(expected in text, f"worker {name} did not say why: {text[-400:]}")
    # The CLI without a token: exit 3 with the server's message.
    rc, _, err = env.qnet("list")
    check(rc == 3 and "requires a token" in err, f"tokenless qnet list exited {rc}: {err}")

    queued = env.qnet_json("submit", *TINY, token=alice)
    check(queued["owner"] == "alice", f"the job's owner is {queued.get('owner')!r}")
    env.start_worker("gpu", "--token-file", str(env.tmp / "gpu-token"))
    done = env.wait_for("the worker's job", lambda: (
        lambda j: j if j["state"] in ("SUCCEEDED", "FAILED") else None)(
            env.qnet_json("get", queued["id"], token=alice)), timeout=300)
    check(done["state"] == "SUCCEEDED" and done["lease_holder"] == "gpu",
          f"job {done['state']} held by {done.get('lease_holder')}: {done.get('error')}")
    rc, _, err = env.qnet("download", queued["id"], "-o", str(env.tmp / "out"), token=alice)
    check(rc == 0, f"alice's download exited {rc}: {err[-400:]}")
    # Bob neither sees, cancels nor downloads alice's job.
    for args in (["get", queued["id"]], ["cancel", queued["id"]],
                 ["download", queued["id"], "-o", str(env.tmp / "bob")]):
        rc, _, err = env.qnet(*args, token=bob)
        check(rc == 2 and "not found" in err, f"bob's qnet {args[0]} exited {rc}: {err[-300:]}")
    check(env.qnet_json("list", token=bob)["jobs"] == [], "bob lists alice's job")

    # Local workers get identities of their own (in their environment, not on their command line).
    qnetd.send_signal(signal.SIGTERM)
    qnetd.wait(timeout=30)
    env.start_qnetd("--local-workers", "1", "--auth-tokens", str(tokens_file))
    rc, out, err = env.qnet("submit", *TINY, "--wait", "--json", timeout=600, token=alice)
    check(rc == 0, f"submit --wait against an authenticating server exited {rc}: {err[-800:]}")
    job = json.loads(out)
    check(job["state"] == "SUCCEEDED" and job["lease_holder"] == "local-worker-0",
          f"the local worker's job: {job['state']} held by {job.get('lease_holder')}")
    print("auth: tokenless and client-token workers refused; alice's job ran on gpu and on a local "
          "worker; bob saw none of it")


def scenario_quota(env: Env):
    identities = {name: new_identity(env, name, "client") for name in ("alice", "bob")}
    tokens_file = env.tmp / "tokens"
    tokens_file.write_text("".join(line + "\n" for _, line in identities.values()))
    alice, bob = identities["alice"][0], identities["bob"][0]
    folder = env.tmp / "pets"
    for split in ("train", "test"):
        for k in range(2):
            (folder / split / f"class{k}").mkdir(parents=True)
    subprocess.run([sys.executable, "-c", MAKE_PNGS, str(folder)], check=True, timeout=120)
    env.start_qnetd("--local-workers", "0", "--auth-tokens", str(tokens_file),
                    "--quota-queued-jobs", "2", "--quota-upload-bytes", "200000")

    jobs = [env.qnet_json("submit", *TINY, token=alice)["id"] for _ in range(2)]
    rc, _, err = env.qnet("submit", *TINY, token=alice)
    check(rc == 3 and "alice has 2 queued jobs and the limit is 2 (qnetd --quota-queued-jobs)" in err,
          f"alice's third submit exited {rc}: {err.strip()[-400:]}")
    check(env.qnet("submit", *TINY, token=bob)[0] == 0, "bob's submit was refused by alice's quota")

    rc, _, err = env.qnet("delete", jobs[0], token=alice)
    check(rc == 2 and "cancel it first" in err, f"delete of a queued job exited {rc}: {err[-300:]}")
    check(env.qnet("cancel", jobs[0], token=alice)[0] == 0, "cancel failed")
    rc, _, err = env.qnet("delete", jobs[0], token=bob)
    check(rc == 2 and "not found" in err, f"bob's delete of alice's job exited {rc}: {err[-300:]}")
    rc, out, err = env.qnet("delete", jobs[0], token=alice)
    check(rc == 0 and "deleted" in out, f"alice's delete exited {rc}: {err[-300:]}")
    rc, _, err = env.qnet("get", jobs[0], token=alice)
    check(rc == 2 and "not found" in err, f"the deleted job is still there: {rc} {err[-300:]}")

    rc, out, err = env.qnet("datasets", "upload", str(folder), "--name", "pets", "--json",
                            timeout=300, token=alice)
    check(rc == 0, f"alice's dataset upload exited {rc}: {err.strip()[-500:]}")
    check(json.loads(out)["owner"] == "alice", f"the dataset's owner: {out[:300]}")
    names = lambda token: [d["name"] for d in env.qnet_json("datasets", token=token)["datasets"]]
    check("pets" in names(alice) and "synth" in names(alice), f"alice lists {names(alice)}")
    check("pets" not in names(bob) and "synth" in names(bob), f"bob lists {names(bob)}")
    rc, _, err = env.qnet("submit", *TINY[:2], "--dataset", "pets", *TINY[4:], token=bob)
    check(rc == 2 and 'unknown dataset "pets"' in err, f"bob's job on pets exited {rc}: {err[-300:]}")
    check("pets" not in err.split("known datasets:")[-1], f"bob was told of pets: {err[-300:]}")
    rc, _, err = env.qnet("datasets", "upload", str(folder), "--name", "pets", token=bob)
    check(rc == 2 and "another identity" in err, f"bob's upload as pets exited {rc}: {err[-300:]}")
    check(env.qnet("submit", *TINY[:2], "--dataset", "pets", *TINY[4:], token=alice)[0] == 0,
          "alice's job on her dataset was refused")

    # Alice's uploads now take most of her bytes: a larger one is refused up front.
    big = env.tmp / "big.npz"
    big.write_bytes(os.urandom(300000))
    rc, _, err = env.qnet("datasets", "upload", str(big), "--name", "big", token=alice)
    check(rc == 3 and "upload quota: alice has" in err and "--quota-upload-bytes" in err,
          f"alice's upload past her quota exited {rc}: {err.strip()[-400:]}")
    print("quota: alice's third queued job and an upload past her bytes were refused; delete "
          "refused a queued job, then deleted it; bob saw neither her job nor her dataset")


# 28x28 PNGs into FOLDER/{train,test}/class{0,1}/ (a tiny uploadable image folder).
MAKE_PNGS = """
import pathlib, random, sys
from PIL import Image
rng = random.Random(1)
for folder in pathlib.Path(sys.argv[1]).glob("*/class*"):
    for i in range(6):
        Image.frombytes("L", (28, 28), bytes(rng.randrange(256) for _ in range(784))).save(
            folder / f"{i}.png")
"""


def scenario_sandbox(env: Env):
    env.start_qnetd("--local-workers", "0")
    model = env.tmp / "hog.pt"
    subprocess.run([sys.executable, str(HERE / "make_hog_model.py"), str(model)], check=True,
                   timeout=120)
    env.start_worker("w1", "--sandbox-memory-mib", "1024")
    hog = env.qnet_json("submit", "--model", str(model), "--dataset", "synth", "--weight-bits", "2",
                        "--max-train-samples", "256", timeout=120)
    env.wait_for("the hog job to end", lambda: env.qnet_json("get", hog["id"])["state"] in
                 ("FAILED", "SUCCEEDED", "CANCELLED"), 300)
    failed = env.qnet_json("get", hog["id"])
    check(failed["state"] == "FAILED" and failed["attempt"] == 1,
          f"hog job {failed['state']} at attempt {failed['attempt']}, want FAILED at 1")
    check("exceeded memory limit 1024 MiB" in failed["error"], f"hog job error: {failed['error']}")
    rc, out, err = env.qnet("submit", *TINY, "--wait", "--json", timeout=600)
    check(rc == 0 and json.loads(out)["state"] == "SUCCEEDED",
          f"the next job after the hog: {rc} {err.strip()[-800:]}")
    print(f"sandbox: the hog job failed for good ({failed['error']}); the next job SUCCEEDED")


def http_get(url, token=None, context=None):
    """GET `url` (as the identity of `token`): (status, headers, body); status 0 when the server
    gives no HTTP answer (a refused TLS handshake, plain HTTP to an HTTPS port)."""
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as r:
            return r.status, r.headers, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read().decode()
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        return 0, {}, str(e)


def scenario_http_auth(env: Env):
    roles = [("alice", "client"), ("bob", "client"), ("prom", "metrics"), ("ops", "admin")]
    identities = {name: new_identity(env, name, role) for name, role in roles}
    tokens_file = env.tmp / "tokens"
    tokens_file.write_text("".join(line + "\n" for _, line in identities.values()))
    alice, bob, prom, ops = (identities[n][0] for n, _ in roles)
    audit = env.tmp / "audit.log"
    qnetd = env.start_qnetd("--local-workers", "0", "--auth-tokens", str(tokens_file),
                            "--audit-log", str(audit))
    mine = env.qnet_json("submit", *TINY, token=alice)["id"]
    theirs = env.qnet_json("submit", *TINY, token=bob)["id"]
    base = f"http://{env.http}"

    for path in ("/metrics", "/api/v1/jobs", f"/api/v1/jobs/{mine}", "/api/v1/summary"):
        status, headers, _ = http_get(base + path)
        check(status == 401 and headers.get("WWW-Authenticate", "").startswith("Bearer"),
              f"GET {path} without a token: {status}")
    check(http_get(base + "/healthz")[0] == 200, "/healthz needs no token")
    check(http_get(base + "/metrics", alice)[0] == 403, "a client scraped /metrics")
    check(http_get(base + "/api/v1/jobs", prom)[0] == 403, "the metrics role read jobs")
    status, _, body = http_get(base + "/metrics", prom)
    check(status == 200 and "qnet_jobs_submitted_total" in body, f"prom's scrape: {status}")
    listed = lambda token: [j["id"] for j in json.loads(http_get(base + "/api/v1/jobs", token)[2])[
        "jobs"]]
    check(listed(alice) == [mine], f"alice lists {listed(alice)}, not only {mine}")
    check(sorted(listed(ops)) == sorted([mine, theirs]), f"the admin lists {listed(ops)}")
    check(http_get(f"{base}/api/v1/jobs/{theirs}", alice)[0] == 404, "alice read bob's job")
    check(http_get(f"{base}/api/v1/jobs/{mine}", alice)[0] == 200, "alice cannot read her job")

    rc, _, err = env.qnet("cancel", mine, token=bob)
    check(rc != 0 and "not found" in err, f"bob cancelled alice's job: {rc} {err[-300:]}")
    rc, _, err = env.qnet("cancel", mine, token=alice)
    check(rc == 0, f"alice's cancel exited {rc}: {err[-300:]}")
    lines = [json.loads(line) for line in audit.read_text().splitlines()]
    got = [(e["identity"], e["role"], e["method"].rsplit("/", 1)[1], e["job_id"], e["code"])
           for e in lines]
    want = [("alice", "client", "SubmitJob", mine, "OK"),
            ("bob", "client", "SubmitJob", theirs, "OK"),
            ("bob", "client", "CancelJob", mine, "NOT_FOUND"),
            ("alice", "client", "CancelJob", mine, "OK")]
    check(got == want, f"audit log {got}, want {want}")
    text = audit.read_text()
    check(not any(token in text for token in (alice, bob, prom, ops)), "a token in the audit log")

    # HTTPS on the same port flag, with a CA made by the openssl command line.
    qnetd.send_signal(signal.SIGTERM)
    qnetd.wait(timeout=30)
    pki = env.tmp / "pki"
    pki.mkdir()
    subprocess.run([str(HERE.parent / "server" / "auth" / "make_certs.sh"), str(pki)], check=True,
                   timeout=120)
    env.start_qnetd("--local-workers", "0", "--auth-tokens", str(tokens_file), "--tls-cert",
                    str(pki / "server.pem"), "--tls-key", str(pki / "server.key"),
                    "--tls-client-ca", str(pki / "ca.pem"))
    base = f"https://{env.http}"
    trust = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    check(http_get(base + "/api/v1/jobs", context=trust)[0] == 401, "HTTPS without a token")
    status, _, body = http_get(f"{base}/api/v1/jobs/{theirs}", bob, context=trust)
    check(status == 200 and theirs in body, f"bob over HTTPS: {status} {body[:200]}")
    with_cert = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    with_cert.load_cert_chain(str(pki / "alice.pem"), str(pki / "alice.key"))
    status, _, body = http_get(base + "/api/v1/jobs", context=with_cert)
    check(status == 200 and [j["id"] for j in json.loads(body)["jobs"]] == [mine],
          f"alice by certificate: {status} {body[:200]}")
    rogue = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    rogue.load_cert_chain(str(pki / "rogue.pem"), str(pki / "rogue.key"))
    check(http_get(base + "/healthz", context=rogue)[0] == 0, "a rogue certificate got in")
    check(http_get(f"http://{env.http}/healthz")[0] == 0, "plain HTTP answered on the TLS port")
    print("http-auth: 401 without a token, 403 for a wrong role, alice saw only her job; the audit "
          "log has the submits and cancels; HTTPS with tokens and client certificates")


SCENARIOS = {"happy": scenario_happy, "cancel": scenario_cancel, "bad": scenario_bad,
             "kill-worker": scenario_kill_worker, "auth": scenario_auth,
             "sandbox": scenario_sandbox, "http-auth": scenario_http_auth,
             "quota": scenario_quota}


def main(scenarios=SCENARIOS, prefix="qnet_e2e"):
    parser = argparse.ArgumentParser()
    parser.add_argument("scenario", choices=sorted(scenarios))
    parser.add_argument("--qnetd", required=True)
    parser.add_argument("--worker", default="",
                        help="qnet-worker (every scenario but http-auth and quota)")
    parser.add_argument("--qnet", required=True)
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f"{prefix}_{args.scenario}_"))
    env = Env(args, tmp)
    try:
        scenarios[args.scenario](env)
        return 0
    except (Failure, subprocess.TimeoutExpired, json.JSONDecodeError, KeyError) as e:
        print(f"FAIL {args.scenario}: {e}\n{env.logs()}")
        return 1
    finally:
        env.close()
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
