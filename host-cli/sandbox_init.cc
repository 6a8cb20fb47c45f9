// qrexec-sandbox-init COMMAND [ARG...]: the first program in every domain.
//
// bubblewrap, run as root in the domain's user namespace, drops the
// capabilities outside the domain's set but leaves the bounding set full.
// This program clears the bounding set down to the capabilities it holds
// (minus CAP_SETPCAP, which it needs only for this and which bwrap grants it
// for that reason), drops CAP_SETPCAP, then execs COMMAND. Linked
// statically: it must run with any template's libraries.
#include <linux/capability.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace {

bool Capget(__user_cap_data_struct (&data)[2]) {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  return ::syscall(SYS_capget, &header, data) == 0;
}

bool Capset(__user_cap_data_struct (&data)[2]) {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  return ::syscall(SYS_capset, &header, data) == 0;
}

bool Holds(const __user_cap_data_struct (&data)[2], int cap) {
  return (data[cap / 32].permitted & (1u << (cap % 32))) != 0;
}

int Fail(const char* what) {
  std::fprintf(stderr, "qrexec-sandbox-init: %s: %s\n", what, std::strerror(errno));
  return 127;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: qrexec-sandbox-init COMMAND [ARG...]\n");
    return 2;
  }
  __user_cap_data_struct caps[2] = {};
  if (!Capget(caps)) return Fail("capget");
  for (int cap = 0; cap < 64; ++cap) {
    if (Holds(caps, cap) && cap != CAP_SETPCAP) continue;
    if (::prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL) return Fail("dropping the bounding set");
  }
  ::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_LOWER, CAP_SETPCAP, 0, 0);
  constexpr unsigned kSetpcap = 1u << CAP_SETPCAP;  // capability 8: the low half
  caps[0].effective &= ~kSetpcap;
  caps[0].permitted &= ~kSetpcap;
  caps[0].inheritable &= ~kSetpcap;
  if (!Capset(caps)) return Fail("capset");
  ::execvp(argv[1], argv + 1);
  return Fail(argv[1]);
}
