// A cheap structural check that a file is a TorchScript archive, without LibTorch: a TorchScript
// .pt file (torch.jit.save) is a ZIP archive whose central directory lists
// "<archive>/data.pkl" or "<archive>/constants.pkl". minizip reads the directory from the file one
// entry at a time, and the check stops after a bounded number of entries and directory bytes, so
// any file costs little memory and time; garbage input only ever yields INVALID_ARGUMENT.
//
//   absl::Status s = CheckTorchScriptArchive(blob_store.PathOf(digest));
//   if (!s.ok()) return s;  // INVALID_ARGUMENT with the reason, e.g. "not a ZIP file"
#ifndef QNET_SERVER_BLOBS_TORCHSCRIPT_ARCHIVE_H_
#define QNET_SERVER_BLOBS_TORCHSCRIPT_ARCHIVE_H_

#include <string>

#include "absl/status/status.h"

namespace qnet::server {

absl::Status CheckTorchScriptArchive(const std::string& path);

}  // namespace qnet::server

#endif  // QNET_SERVER_BLOBS_TORCHSCRIPT_ARCHIVE_H_
