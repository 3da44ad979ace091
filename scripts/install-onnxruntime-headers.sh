#!/usr/bin/env bash
# ONNX Runtime's C and C++ API headers, with which the worker scores its ONNX artifact in ONNX
# Runtime (workers/engine/export/onnx_runtime.h); the library is the onnxruntime PyPI wheel's,
# loaded at run time. Bookworm does not package ONNX Runtime, so the headers are those of the next
# Debian release's libonnxruntime-dev, fetched with a private apt configuration (the system's
# sources and lists stay as they are) and unpacked into /usr/local/include/onnxruntime; nothing of
# trixie is installed. Its C API is versioned: a newer library serves an older header's version.
# Run as root; does nothing when the headers are there. Used by install-deps.sh and the worker's
# container image (docker/worker.Dockerfile).
set -euo pipefail
ort_include=/usr/local/include/onnxruntime
if [[ ! -f $ort_include/onnxruntime_cxx_api.h ]]; then
  echo "installing ONNX Runtime's API headers (Debian trixie's libonnxruntime-dev) into $ort_include"
  apt_dir=$(mktemp -d)
  trap 'rm -rf "$apt_dir"' EXIT
  mkdir -p "$apt_dir/lists/partial" "$apt_dir/archives/partial" "$apt_dir/unpacked"
  echo "deb http://deb.debian.org/debian trixie main" >"$apt_dir/sources.list"
  apt_opts=(-o "Dir::Etc::SourceList=$apt_dir/sources.list" -o Dir::Etc::SourceParts=/dev/null
    -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache::Archives=$apt_dir/archives"
    -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache= -o APT::Sandbox::User=root)
  apt-get "${apt_opts[@]}" update -q
  (cd "$apt_dir" && apt-get "${apt_opts[@]}" download libonnxruntime-dev)
  dpkg-deb -x "$apt_dir"/libonnxruntime-dev_*.deb "$apt_dir/unpacked"
  mkdir -p "$ort_include"
  cp -r "$apt_dir/unpacked/usr/include/onnxruntime/." "$ort_include/"
fi
