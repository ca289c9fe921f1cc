// The libtorch APIs that differ between the releases torchbert builds against (2.11 to 2.15), in one
// place, so the rest of native/ is written once (scripts/check-libtorch-api.sh compiles it against each).
#pragma once

#include <torch/version.h>

#define TORCHBERT_TORCH_AT_LEAST(major, minor) \
  (TORCH_VERSION_MAJOR > (major) || (TORCH_VERSION_MAJOR == (major) && TORCH_VERSION_MINOR >= (minor)))

namespace torchbert::compat {

// c10d: up to 2.13 a group's ranks agree on its sequence number through the store (Python's
// init_process_group does, so a Node rank sharing the group must too); from 2.14 numbers start at 0 on
// every rank and the call is a no-op that warns.
template <typename Backend>
void SetSequenceNumberForGroup(Backend& backend) {
#if TORCHBERT_TORCH_AT_LEAST(2, 14)
  (void)backend;
#else
  backend.setSequenceNumberForGroup();
#endif
}

}  // namespace torchbert::compat
