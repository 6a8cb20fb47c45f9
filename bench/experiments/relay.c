// Relay prototypes for the qrexec 4 GiB throughput experiment.
//
//   head -c N /dev/zero | ./relay MODE [key=val ...] > /dev/null
//
// Process layout: this process is relay A (caller side, reads fd 0), it forks
// relay B (service side) and the service `cat` whose stdin is one end of an
// AF_UNIX SOCK_STREAM socketpair; B writes payload into the other end.
// Frames on the "vchan": {u32 type, u32 len} + len bytes (len <= 65536).
//
// MODE:
//   sock     vchan = AF_UNIX socketpair, A: read+writev, B: read hdr, read payload, write
//            opts: batch=1  (B reads big blocks and writev()s several payloads)
//   shm      vchan = shared memory ring (memfd, double-mapped)
//            opts: ring=BYTES wake=futex|efd spin=USEC readv=1 (A fills several
//                  frames per readv) writev=1 (B writes several payloads per writev)
//   splice   vchan = pipe; A: splice stdin->private pipe, write hdr, splice priv->vchan;
//            B: read hdr, splice vchan->service socket. opts: pipesz=BYTES
//            fionread=1: A uses FIONREAD on stdin and splices stdin->vchan directly
//            (no private pipe)
//   common opts: stdinsz=BYTES  (F_SETPIPE_SZ on A's stdin pipe)
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define MAXCHUNK 65536
#define HDR 8
#define T_DATA 1
#define T_EOF 0

static void die(const char *m) { perror(m); exit(1); }
static uint64_t st_reads, st_bytes;

// options
static long o_ring = 1 << 20, o_spin = 0, o_pipesz = 0, o_stdinsz = 0;
static long o_sndbuf = 0;
static int o_lazy = 0;
static int o_efd = 0, o_batch = 0, o_readv = 0, o_writev = 0, o_fionread = 0;

static long parse_size(const char *s) {
  char *e;
  long v = strtol(s, &e, 0);
  if (*e == 'K' || *e == 'k') v <<= 10;
  if (*e == 'M' || *e == 'm') v <<= 20;
  return v;
}

static void write_all(int fd, const void *b, size_t n) {
  const char *p = b;
  while (n) {
    ssize_t r = write(fd, p, n);
    if (r < 0) { if (errno == EINTR) continue; die("write"); }
    p += r; n -= r;
  }
}
static size_t read_full(int fd, void *b, size_t n) {
  char *p = b; size_t got = 0;
  while (got < n) {
    ssize_t r = read(fd, p + got, n - got);
    if (r < 0) { if (errno == EINTR) continue; die("read"); }
    if (r == 0) break;
    got += r;
  }
  return got;
}
static void writev_all(int fd, struct iovec *iov, int cnt) {
  while (cnt) {
    ssize_t r = writev(fd, iov, cnt);
    if (r < 0) { if (errno == EINTR) continue; die("writev"); }
    while (cnt && (size_t)r >= iov->iov_len) { r -= iov->iov_len; iov++; cnt--; }
    if (cnt) { iov->iov_base = (char *)iov->iov_base + r; iov->iov_len -= r; }
  }
}

static inline uint64_t now_ns(void) {
  struct timespec ts; clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

/* ------------------------------------------------------------ socket */
static void sock_A(int v) {
  static char buf[MAXCHUNK];
  uint32_t hdr[2];
  struct iovec iov[2] = {{hdr, HDR}, {buf, 0}};
  for (;;) {
    ssize_t n = read(0, buf, MAXCHUNK);
    if (n < 0) { if (errno == EINTR) continue; die("read stdin"); }
    if (n == 0) break;
    st_reads++; st_bytes += n;
    hdr[0] = T_DATA; hdr[1] = n;
    iov[0].iov_base = hdr; iov[0].iov_len = HDR;
    iov[1].iov_base = buf; iov[1].iov_len = n;
    writev_all(v, iov, 2);
  }
  close(v);
}
static void sock_B(int v, int s) {
  static char buf[MAXCHUNK];
  uint32_t hdr[2];
  for (;;) {
    size_t g = read_full(v, hdr, HDR);
    if (g == 0) break;
    if (g != HDR || hdr[1] > MAXCHUNK) { fprintf(stderr, "bad frame\n"); exit(1); }
    if (read_full(v, buf, hdr[1]) != hdr[1]) { fprintf(stderr, "short\n"); exit(1); }
    write_all(s, buf, hdr[1]);
  }
}
// B reads big blocks, parses frames and writev()s all complete payloads at once.
static void sock_B_batch(int v, int s) {
  enum { BUF = 4 * (MAXCHUNK + HDR) };
  static char buf[BUF];
  size_t have = 0;
  for (;;) {
    ssize_t r = read(v, buf + have, BUF - have);
    if (r < 0) { if (errno == EINTR) continue; die("read v"); }
    if (r == 0) break;
    have += r;
    struct iovec iov[64]; int cnt = 0; size_t off = 0;
    while (have - off >= HDR && cnt < 64) {
      uint32_t hdr[2]; memcpy(hdr, buf + off, HDR);
      if (hdr[1] > MAXCHUNK) { fprintf(stderr, "bad frame\n"); exit(1); }
      if (have - off < HDR + hdr[1]) break;
      iov[cnt].iov_base = buf + off + HDR; iov[cnt].iov_len = hdr[1]; cnt++;
      off += HDR + hdr[1];
    }
    if (cnt) writev_all(s, iov, cnt);
    memmove(buf, buf + off, have - off);
    have -= off;
  }
}

/* ------------------------------------------------------------ shm ring */
struct ctl {
  _Atomic uint32_t prod; char pad1[60];
  _Atomic uint32_t cons; char pad2[60];
  _Atomic uint32_t cons_sleeping; char pad3[60];
  _Atomic uint32_t prod_sleeping; char pad4[60];
};
static struct ctl *C;
static char *ring;
static uint32_t mask;
static int efd_cons, efd_prod;  // eventfd: wake consumer / wake producer
static uint64_t st_waits, st_wakes, st_spin_ok;


static long futex(_Atomic uint32_t *addr, int op, uint32_t val) {
  return syscall(SYS_futex, addr, op, val, NULL, NULL, 0);
}

static void shm_setup(void) {
  if (o_ring & (o_ring - 1)) { fprintf(stderr, "ring must be power of 2\n"); exit(1); }
  mask = o_ring - 1;
  int fd = memfd_create("vchan", 0);
  if (fd < 0) die("memfd");
  if (ftruncate(fd, o_ring)) die("ftruncate");
  char *base = mmap(NULL, 2 * o_ring, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (base == MAP_FAILED) die("mmap");
  if (mmap(base, o_ring, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED | MAP_POPULATE, fd, 0) == MAP_FAILED) die("mmap1");
  if (mmap(base + o_ring, o_ring, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED | MAP_POPULATE, fd, 0) == MAP_FAILED) die("mmap2");
  ring = base;
  close(fd);
  C = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (C == MAP_FAILED) die("mmap ctl");
  memset(C, 0, sizeof *C);
  if (o_efd) {
    efd_cons = eventfd(0, 0); efd_prod = eventfd(0, 0);
    if (efd_cons < 0 || efd_prod < 0) die("eventfd");
  }
}

// Wait until *word != old. sleeping = our "I'm asleep" flag read by the waker.
static void shm_wait(_Atomic uint32_t *word, uint32_t old, _Atomic uint32_t *sleeping, int efd) {
  if (o_spin) {
    uint64_t end = now_ns() + o_spin * 1000;
    int i = 0;
    for (;;) {
      if (atomic_load_explicit(word, memory_order_acquire) != old) { st_spin_ok++; return; }
      __builtin_ia32_pause();
      if ((++i & 63) == 0 && now_ns() > end) break;
    }
  }
  st_waits++;
  atomic_store_explicit(sleeping, 1, memory_order_relaxed);
  atomic_thread_fence(memory_order_seq_cst);
  if (atomic_load_explicit(word, memory_order_acquire) == old) {
    if (o_efd) {
      uint64_t v;
      if (read(efd, &v, 8) < 0 && errno != EINTR) die("efd read");
    } else {
      futex(word, FUTEX_WAIT, old);
    }
  }
  atomic_store_explicit(sleeping, 0, memory_order_relaxed);
}
static inline void shm_publish(_Atomic uint32_t *word, uint32_t val, _Atomic uint32_t *other_sleeping, int efd) {
  atomic_store_explicit(word, val, memory_order_release);
  atomic_thread_fence(memory_order_seq_cst);
  if (atomic_load_explicit(other_sleeping, memory_order_relaxed)) {
    st_wakes++;
    if (o_efd) {
      uint64_t one = 1;
      if (write(efd, &one, 8) < 0) die("efd write");
    } else {
      futex(word, FUTEX_WAKE, 1);
    }
  }
}

static void shm_A(void) {
  uint32_t p = 0;
  const uint32_t R = o_ring;
  const uint32_t minfree = HDR + 4096;
  for (;;) {
    uint32_t c, freeb;
    for (;;) {
      c = atomic_load_explicit(&C->cons, memory_order_acquire);
      freeb = R - (p - c);
      if (freeb >= minfree) break;
      shm_wait(&C->cons, c, &C->prod_sleeping, efd_prod);
    }
    ssize_t n;
    if (!o_readv) {
      uint32_t want = freeb - HDR; if (want > MAXCHUNK) want = MAXCHUNK;
      n = read(0, ring + ((p + HDR) & mask), want);
      if (n < 0) { if (errno == EINTR) continue; die("read stdin"); }
      if (n == 0) break;
      st_reads++; st_bytes += n;
      uint32_t hdr[2] = {T_DATA, (uint32_t)n};
      memcpy(ring + (p & mask), hdr, HDR);
      p += HDR + n;
    } else {
      // several frames per readv: iov k goes after header slot k
      struct iovec iov[16]; int cnt = 0; uint32_t q = p, left = freeb;
      while (cnt < 16 && left >= minfree) {
        uint32_t w = left - HDR; if (w > MAXCHUNK) w = MAXCHUNK;
        iov[cnt].iov_base = ring + ((q + HDR) & mask); iov[cnt].iov_len = w; cnt++;
        q += HDR + w; left -= HDR + w;
      }
      n = readv(0, iov, cnt);
      if (n < 0) { if (errno == EINTR) continue; die("readv stdin"); }
      if (n == 0) break;
      st_reads++; st_bytes += n;
      for (int k = 0; n > 0; k++) {
        uint32_t w = (size_t)n < iov[k].iov_len ? (uint32_t)n : (uint32_t)iov[k].iov_len;
        uint32_t hdr[2] = {T_DATA, w};
        memcpy(ring + (p & mask), hdr, HDR);
        p += HDR + w; n -= w;
      }
    }
    shm_publish(&C->prod, p, &C->cons_sleeping, efd_cons);
  }
  // EOF frame
  for (;;) {
    uint32_t c = atomic_load_explicit(&C->cons, memory_order_acquire);
    if (R - (p - c) >= HDR) break;
    shm_wait(&C->cons, c, &C->prod_sleeping, efd_prod);
  }
  uint32_t hdr[2] = {T_EOF, 0};
  memcpy(ring + (p & mask), hdr, HDR);
  p += HDR;
  shm_publish(&C->prod, p, &C->cons_sleeping, efd_cons);
}

static void shm_B(int s) {
  uint32_t c = 0;
  for (;;) {
    uint32_t p;
    while ((p = atomic_load_explicit(&C->prod, memory_order_acquire)) == c)
      shm_wait(&C->prod, c, &C->cons_sleeping, efd_cons);
    // NOTE: a real implementation must treat p (written by an untrusted peer) as
    // hostile: clamp p - c <= R and validate hdr.len <= MAXCHUNK and <= p - c - HDR,
    // and copy the header out once (no double fetch).
    if (!o_writev) {
      while (c != p) {
        uint32_t hdr[2]; memcpy(hdr, ring + (c & mask), HDR);
        if (hdr[0] == T_EOF) return;
        if (hdr[1] > MAXCHUNK || hdr[1] > p - c - HDR) { fprintf(stderr, "bad frame\n"); exit(1); }
        write_all(s, ring + ((c + HDR) & mask), hdr[1]);
        c += HDR + hdr[1];
        shm_publish(&C->cons, c, &C->prod_sleeping, efd_prod);
      }
    } else {
      struct iovec iov[64]; int cnt = 0; uint32_t q = c; int eof = 0;
      while (q != p && cnt < 64) {
        uint32_t hdr[2]; memcpy(hdr, ring + (q & mask), HDR);
        if (hdr[0] == T_EOF) { eof = 1; break; }
        if (hdr[1] > MAXCHUNK || hdr[1] > p - q - HDR) { fprintf(stderr, "bad frame\n"); exit(1); }
        iov[cnt].iov_base = ring + ((q + HDR) & mask); iov[cnt].iov_len = hdr[1]; cnt++;
        q += HDR + hdr[1];
      }
      if (cnt) writev_all(s, iov, cnt);
      c = q;
      shm_publish(&C->cons, c, &C->prod_sleeping, efd_prod);
      if (eof) return;
    }
  }
}


/* lazy variant: waker clears the sleeper's flag (exchange), producer defers the
   wake until LAZY_W bytes are pending or it is about to block; consumer wakes the
   producer only once half the ring is free. Stdin is O_NONBLOCK + poll(). */
static inline void wake_word(_Atomic uint32_t *word, _Atomic uint32_t *flag, int efd) {
  if (atomic_exchange_explicit(flag, 0, memory_order_relaxed)) {
    st_wakes++;
    if (o_efd) { uint64_t one = 1; if (write(efd, &one, 8) < 0) die("efd write"); }
    else futex(word, FUTEX_WAKE, 1);
  }
}
static void lazy_wait(_Atomic uint32_t *word, uint32_t old, _Atomic uint32_t *sleeping, int efd) {
  if (o_spin) {
    uint64_t end = now_ns() + o_spin * 1000; int i = 0;
    for (;;) {
      if (atomic_load_explicit(word, memory_order_acquire) != old) { st_spin_ok++; return; }
      __builtin_ia32_pause();
      if ((++i & 63) == 0 && now_ns() > end) break;
    }
  }
  st_waits++;
  atomic_store_explicit(sleeping, 1, memory_order_relaxed);
  atomic_thread_fence(memory_order_seq_cst);
  while (atomic_load_explicit(word, memory_order_acquire) == old &&
         atomic_load_explicit(sleeping, memory_order_relaxed)) {
    if (o_efd) { uint64_t v; if (read(efd, &v, 8) < 0 && errno != EINTR) die("efd read"); }
    else futex(word, FUTEX_WAIT, old);
  }
  atomic_store_explicit(sleeping, 0, memory_order_relaxed);
}
static void lazy_A(void) {
  const uint32_t R = o_ring, minfree = HDR + 4096, W = R / 4;
  uint32_t p = 0, base = 0;  // data <= base is known to (awake or woken) consumer
  int fl = fcntl(0, F_GETFL); fcntl(0, F_SETFL, fl | O_NONBLOCK);
#define FLUSH() do { if (p != base) { atomic_thread_fence(memory_order_seq_cst); \
    if (atomic_load_explicit(&C->cons_sleeping, memory_order_relaxed)) wake_word(&C->prod, &C->cons_sleeping, efd_cons); \
    base = p; } } while (0)
  for (;;) {
    uint32_t c, freeb;
    for (;;) {
      c = atomic_load_explicit(&C->cons, memory_order_acquire);
      freeb = R - (p - c);
      if (freeb >= minfree) break;
      FLUSH();
      lazy_wait(&C->cons, c, &C->prod_sleeping, efd_prod);
    }
    struct iovec iov[16]; int cnt = 0; uint32_t q = p, left = freeb;
    while (cnt < (o_readv ? 16 : 1) && left >= minfree) {
      uint32_t w = left - HDR; if (w > MAXCHUNK) w = MAXCHUNK;
      iov[cnt].iov_base = ring + ((q + HDR) & mask); iov[cnt].iov_len = w; cnt++;
      q += HDR + w; left -= HDR + w;
    }
    ssize_t n = readv(0, iov, cnt);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) {
        FLUSH();
        struct pollfd pf = {0, POLLIN, 0};
        poll(&pf, 1, -1);
        continue;
      }
      die("readv stdin");
    }
    if (n == 0) break;
    st_reads++; st_bytes += n;
    for (int k = 0; n > 0; k++) {
      uint32_t w = (size_t)n < iov[k].iov_len ? (uint32_t)n : (uint32_t)iov[k].iov_len;
      uint32_t hdr[2] = {T_DATA, w};
      memcpy(ring + (p & mask), hdr, HDR);
      p += HDR + w; n -= w;
    }
    atomic_store_explicit(&C->prod, p, memory_order_release);
    atomic_thread_fence(memory_order_seq_cst);
    if (!atomic_load_explicit(&C->cons_sleeping, memory_order_relaxed)) base = p;
    else if (p - base >= W) { wake_word(&C->prod, &C->cons_sleeping, efd_cons); base = p; }
  }
  for (;;) {
    uint32_t c = atomic_load_explicit(&C->cons, memory_order_acquire);
    if (R - (p - c) >= HDR) break;
    FLUSH();
    lazy_wait(&C->cons, c, &C->prod_sleeping, efd_prod);
  }
  uint32_t hdr[2] = {T_EOF, 0};
  memcpy(ring + (p & mask), hdr, HDR);
  p += HDR;
  atomic_store_explicit(&C->prod, p, memory_order_release);
  FLUSH();
  fcntl(0, F_SETFL, fl);
}
static void lazy_B(int s) {
  const uint32_t R = o_ring;
  uint32_t c = 0;
  for (;;) {
    uint32_t p;
    while ((p = atomic_load_explicit(&C->prod, memory_order_acquire)) == c)
      lazy_wait(&C->prod, c, &C->cons_sleeping, efd_cons);
    struct iovec iov[64]; int cnt = 0; uint32_t q = c; int eof = 0;
    while (q != p && cnt < (o_writev ? 64 : 1)) {
      uint32_t hdr[2]; memcpy(hdr, ring + (q & mask), HDR);
      if (hdr[0] == T_EOF) { eof = 1; break; }
      if (hdr[1] > MAXCHUNK || hdr[1] > p - q - HDR) { fprintf(stderr, "bad frame\n"); exit(1); }
      iov[cnt].iov_base = ring + ((q + HDR) & mask); iov[cnt].iov_len = hdr[1]; cnt++;
      q += HDR + hdr[1];
    }
    if (cnt) writev_all(s, iov, cnt);
    c = q;
    atomic_store_explicit(&C->cons, c, memory_order_release);
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load_explicit(&C->prod_sleeping, memory_order_relaxed)) {
      uint32_t pn = atomic_load_explicit(&C->prod, memory_order_acquire);
      if (R - (pn - c) >= R / 2 || pn == c) wake_word(&C->cons, &C->prod_sleeping, efd_prod);
    }
    if (eof) return;
  }
}

/* ------------------------------------------------------------ splice */
static void splice_A(int v) {
  int pp[2];
  if (!o_fionread) {
    if (pipe(pp)) die("pipe");
    if (o_pipesz && fcntl(pp[1], F_SETPIPE_SZ, o_pipesz) < 0) die("setpipe priv");
  }
  for (;;) {
    ssize_t n;
    if (!o_fionread) {
      n = splice(0, NULL, pp[1], NULL, MAXCHUNK, SPLICE_F_MOVE);
      if (n < 0) { if (errno == EINTR) continue; die("splice in"); }
      if (n == 0) break;
      st_reads++; st_bytes += n;
      uint32_t hdr[2] = {T_DATA, (uint32_t)n};
      write_all(v, hdr, HDR);
      while (n) {
        ssize_t m = splice(pp[0], NULL, v, NULL, n, SPLICE_F_MOVE);
        if (m <= 0) { if (m < 0 && errno == EINTR) continue; die("splice out"); }
        n -= m;
      }
    } else {
      int avail = 0;
      if (ioctl(0, FIONREAD, &avail)) die("FIONREAD");
      if (avail == 0) {
        struct pollfd pf = {0, POLLIN, 0};
        if (poll(&pf, 1, -1) < 0 && errno != EINTR) die("poll");
        if (ioctl(0, FIONREAD, &avail)) die("FIONREAD");
        if (avail == 0) { if (pf.revents & POLLHUP) break; continue; }
      }
      n = avail > MAXCHUNK ? MAXCHUNK : avail;
      st_reads++; st_bytes += n;
      uint32_t hdr[2] = {T_DATA, (uint32_t)n};
      write_all(v, hdr, HDR);
      while (n) {  // we are the only reader of fd 0, so n bytes are there
        ssize_t m = splice(0, NULL, v, NULL, n, SPLICE_F_MOVE);
        if (m <= 0) { if (m < 0 && errno == EINTR) continue; die("splice direct"); }
        n -= m;
      }
    }
  }
  close(v);
}
static void splice_B(int v, int s) {
  uint32_t hdr[2];
  for (;;) {
    size_t g = read_full(v, hdr, HDR);
    if (g == 0) break;
    if (g != HDR || hdr[1] > MAXCHUNK) { fprintf(stderr, "bad frame\n"); exit(1); }
    size_t n = hdr[1];
    while (n) {
      ssize_t m = splice(v, NULL, s, NULL, n, SPLICE_F_MOVE);
      if (m <= 0) { if (m < 0 && errno == EINTR) continue; die("splice to sock"); }
      n -= m;
    }
  }
}

/* ------------------------------------------------------------ main */
int main(int argc, char **argv) {
  if (argc < 2) { fprintf(stderr, "usage: relay sock|shm|splice [opts]\n"); return 2; }
  const char *mode = argv[1];
  for (int i = 2; i < argc; i++) {
    char *k = argv[i], *v = strchr(k, '=');
    if (!v) { fprintf(stderr, "bad opt %s\n", k); return 2; }
    *v++ = 0;
    if (!strcmp(k, "ring")) o_ring = parse_size(v);
    else if (!strcmp(k, "spin")) o_spin = atol(v);
    else if (!strcmp(k, "wake")) o_efd = !strcmp(v, "efd");
    else if (!strcmp(k, "batch")) o_batch = atoi(v);
    else if (!strcmp(k, "readv")) o_readv = atoi(v);
    else if (!strcmp(k, "writev")) o_writev = atoi(v);
    else if (!strcmp(k, "pipesz")) o_pipesz = parse_size(v);
    else if (!strcmp(k, "stdinsz")) o_stdinsz = parse_size(v);
    else if (!strcmp(k, "fionread")) o_fionread = atoi(v);
    else if (!strcmp(k, "sndbuf")) o_sndbuf = parse_size(v);
    else if (!strcmp(k, "lazy")) o_lazy = atoi(v);
    else { fprintf(stderr, "unknown opt %s\n", k); return 2; }
  }
  if (o_stdinsz && fcntl(0, F_SETPIPE_SZ, o_stdinsz) < 0) die("F_SETPIPE_SZ stdin");

  int svc[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, svc)) die("socketpair svc");
  pid_t cat = fork();
  if (cat == 0) {
    dup2(svc[1], 0); close(svc[0]); close(svc[1]);
    execlp("cat", "cat", (char *)NULL);
    die("exec cat");
  }
  close(svc[1]);
  if (o_sndbuf) {
    int v = o_sndbuf;
    if (setsockopt(svc[0], SOL_SOCKET, SO_SNDBUFFORCE, &v, sizeof v)) die("SO_SNDBUFFORCE");
  }

  int va = -1, vb = -1;
  if (!strcmp(mode, "sock")) {
    int sv[2]; if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv)) die("socketpair v");
    va = sv[0]; vb = sv[1];
  } else if (!strcmp(mode, "splice")) {
    int p[2]; if (pipe(p)) die("pipe");
    if (o_pipesz && fcntl(p[1], F_SETPIPE_SZ, o_pipesz) < 0) die("setpipe v");
    va = p[1]; vb = p[0];
  } else if (!strcmp(mode, "shm")) {
    shm_setup();
  } else { fprintf(stderr, "bad mode\n"); return 2; }

  pid_t b = fork();
  if (b == 0) {
    if (va >= 0) close(va);
    int d0 = open("/dev/null", O_RDONLY); dup2(d0, 0); close(d0);  // B does not read stdin
    if (!strcmp(mode, "sock")) (o_batch ? sock_B_batch : sock_B)(vb, svc[0]);
    else if (!strcmp(mode, "splice")) splice_B(vb, svc[0]);
    else if (o_lazy) lazy_B(svc[0]);
    else shm_B(svc[0]);
    close(svc[0]);
    if (getenv("RELAY_STATS")) fprintf(stderr, "B: waits=%lu wakes=%lu spin_ok=%lu\n", st_waits, st_wakes, st_spin_ok);
    _exit(0);
  }
  close(svc[0]);
  if (vb >= 0) close(vb);
  if (!strcmp(mode, "sock")) sock_A(va);
  else if (!strcmp(mode, "splice")) splice_A(va);
  else if (o_lazy) lazy_A();
  else shm_A();
  if (getenv("RELAY_STATS")) fprintf(stderr, "A: waits=%lu wakes=%lu spin_ok=%lu\n", st_waits, st_wakes, st_spin_ok);
  int st, rc = 0;
  struct rusage rb, rc_, ra;
  if (wait4(b, &st, 0, &rb) < 0 || !WIFEXITED(st) || WEXITSTATUS(st)) rc = 1;
  if (wait4(cat, &st, 0, &rc_) < 0 || !WIFEXITED(st) || WEXITSTATUS(st)) rc = 1;
  getrusage(RUSAGE_SELF, &ra);
  if (getenv("RELAY_STATS")) {
    struct rusage *r[3] = {&ra, &rb, &rc_}; const char *nm[3] = {"A", "B", "cat"};
    for (int i = 0; i < 3; i++)
      fprintf(stderr, "%-3s user %.2fs sys %.2fs vcsw %ld ivcsw %ld\n", nm[i],
              r[i]->ru_utime.tv_sec + r[i]->ru_utime.tv_usec / 1e6,
              r[i]->ru_stime.tv_sec + r[i]->ru_stime.tv_usec / 1e6, r[i]->ru_nvcsw, r[i]->ru_nivcsw);
    fprintf(stderr, "A: reads=%lu avg=%.0f bytes\n", st_reads, st_reads ? (double)st_bytes / st_reads : 0);
  }
  return rc;
}
