"""Finds the generated qnet.v1 stubs: on sys.path (PYTHONPATH), else generated once from the
checkout's proto/ into a cache directory with grpc_tools."""
import hashlib
import importlib
import os
import pathlib
import sys


def _generate() -> None:
    proto_root = pathlib.Path(__file__).resolve().parents[3] / "proto"
    protos = sorted((proto_root / "qnet" / "v1").glob("*.proto"))
    if not protos:
        raise ImportError(
            "qnet.v1 stubs not found: run client/python/generate.sh DIR and add DIR to PYTHONPATH")
    key = hashlib.sha256(b"".join(p.read_bytes() for p in protos)).hexdigest()[:16]
    cache = pathlib.Path(os.environ.get("XDG_CACHE_HOME", pathlib.Path.home() / ".cache"))
    out = cache / "qnet-python-stubs" / key
    if not (out / "qnet" / "v1" / "job_pb2_grpc.py").exists():
        import importlib.resources

        from grpc_tools import protoc  # only needed when stubs are not pre-generated

        well_known = importlib.resources.files("grpc_tools") / "_proto"  # timestamp.proto
        out.mkdir(parents=True, exist_ok=True)
        args = ["protoc", f"--proto_path={proto_root}", f"--proto_path={well_known}",
                f"--python_out={out}",
                f"--grpc_python_out={out}"] + [str(p) for p in protos]
        if protoc.main(args) != 0:
            raise ImportError(f"grpc_tools.protoc failed for {proto_root}")
    sys.path.insert(0, str(out))


try:
    job_pb2 = importlib.import_module("qnet.v1.job_pb2")
except ImportError:
    _generate()
    job_pb2 = importlib.import_module("qnet.v1.job_pb2")
job_pb2_grpc = importlib.import_module("qnet.v1.job_pb2_grpc")
blob_pb2 = importlib.import_module("qnet.v1.blob_pb2")
blob_pb2_grpc = importlib.import_module("qnet.v1.blob_pb2_grpc")
