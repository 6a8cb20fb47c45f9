// Runs inside a domain for tests/host/escape_test.cc: tries what an attacker
// with root in a domain would try and prints one line per attempt,
// "NAME ok" or "NAME errno-name", so the test can assert each one failed.
//
//   escape_probe syscalls             the refused system calls and files
//   escape_probe alloc MEBIBYTES      touches that much memory, then "alloc ok"
//   escape_probe fork COUNT           forks COUNT sleeping children; prints
//                                     how many it got, then waits
#include <fcntl.h>
#include <linux/keyctl.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

void Report(const char* name, long rc) {
  if (rc >= 0) {
    std::printf("%s ok\n", name);
  } else {
    std::printf("%s %s\n", name, strerrorname_np(errno));
  }
}

// Writes a sysctl's current value back to it: a write that succeeds (on a
// host that is not confining its domains) changes nothing.
long RewriteSysctl(const char* path) {
  char value[256] = {};
  int in = ::open(path, O_RDONLY | O_CLOEXEC);
  long got = in < 0 ? 0 : ::read(in, value, sizeof value - 1);
  if (in >= 0) ::close(in);
  int fd = ::open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  long rc = ::write(fd, value, got > 0 ? static_cast<size_t>(got) : 0);
  ::close(fd);
  return rc;
}

long OpenForWrite(const char* path) {
  int fd = ::open(path, O_WRONLY | O_CLOEXEC);
  if (fd >= 0) ::close(fd);
  return fd;
}

int Syscalls() {
  Report("add_key", ::syscall(SYS_add_key, "user", "qrexec-probe", "x", 1, KEY_SPEC_USER_KEYRING));
  Report("keyctl", ::syscall(SYS_keyctl, KEYCTL_GET_KEYRING_ID, KEY_SPEC_USER_KEYRING, 0));
  Report("request_key", ::syscall(SYS_request_key, "user", "qrexec-test", nullptr, 0));
  Report("bpf", ::syscall(SYS_bpf, 0, nullptr, 0));
  Report("perf_event_open", ::syscall(SYS_perf_event_open, nullptr, 0, -1, -1, 0));
  Report("userfaultfd", ::syscall(SYS_userfaultfd, 0));
  Report("io_uring_setup", ::syscall(SYS_io_uring_setup, 1, nullptr));
  Report("kexec_load", ::syscall(SYS_kexec_load, 0, 0, nullptr, 0));
  Report("init_module", ::syscall(SYS_init_module, nullptr, 0, ""));
  Report("unshare_user", ::unshare(CLONE_NEWUSER));
  Report("mount", ::mount("none", "/tmp", "tmpfs", 0, nullptr));
  Report("core_pattern", RewriteSysctl("/proc/sys/kernel/core_pattern"));
  Report("modprobe_path", RewriteSysctl("/proc/sys/kernel/modprobe"));
  Report("drop_caches", OpenForWrite("/proc/sys/vm/drop_caches"));
  Report("sysrq", OpenForWrite("/proc/sysrq-trigger"));
  // A control: an ordinary call still works.
  Report("getpid", ::getpid());
  return 0;
}

int Alloc(long mebibytes) {
  std::vector<char*> blocks;
  for (long i = 0; i < mebibytes; ++i) {
    char* block = static_cast<char*>(std::malloc(1 << 20));
    if (block == nullptr) {
      std::printf("alloc ENOMEM after %ld\n", i);
      return 1;
    }
    std::memset(block, 1, 1 << 20);
    blocks.push_back(block);
  }
  std::printf("alloc ok\n");
  return 0;
}

int Fork(long count) {
  long got = 0;
  for (; got < count; ++got) {
    pid_t pid = ::fork();
    if (pid < 0) break;
    if (pid == 0) {
      ::pause();
      ::_exit(0);
    }
  }
  std::printf("fork %ld\n", got);
  std::fflush(stdout);
  ::pause();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  std::string mode = argc > 1 ? argv[1] : "";
  if (mode == "syscalls") return Syscalls();
  if (mode == "alloc" && argc > 2) return Alloc(std::atol(argv[2]));
  if (mode == "fork" && argc > 2) return Fork(std::atol(argv[2]));
  std::fprintf(stderr, "usage: escape_probe syscalls | alloc MIB | fork COUNT\n");
  return 2;
}
