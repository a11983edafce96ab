#pragma once
// The words a rank ends its message with when a collective failed because
// another rank went away (process_group_communicator.h): an effect, not the
// cause. The --nproc supervisor (local_launcher.cpp) names a rank whose
// message lacks them when there is one.
namespace recmod::dist {

inline constexpr const char* kLostPeerNote = "another rank exited or stalled; its own message says why";

}  // namespace recmod::dist
