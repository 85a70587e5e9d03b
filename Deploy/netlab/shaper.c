// shaper: netem-like delay, jitter and loss in user space, for kernels without the netem qdisc.
//
//   shaper [-d uniform|normal] QUEUE DELAY_MS JITTER_MS LOSS_PERCENT [SEED]
//
// An iptables NFQUEUE rule hands packets to queue QUEUE (metadata only: NFQNL_COPY_META). Each one
// is dropped with probability LOSS_PERCENT / 100, otherwise held for DELAY_MS ± JITTER_MS and then
// accepted unchanged. Like netem, jitter can reorder packets. The jitter is uniform in
// [DELAY - JITTER, DELAY + JITTER] by default (what netem does without a distribution table);
// with -d normal it is normal with standard deviation JITTER. A negative delay is clamped to 0.
// Values may be fractional. SEED makes the loss and jitter sequence repeatable.
//
// It never blocks the queue: verdicts are given later from a timer heap (ppoll with the next
// deadline), the kernel queue holds up to 65536 packets, and the queue is fail-open (a packet the
// queue or socket cannot take is accepted instead of dropped). Counters go to stdout on SIGUSR1
// and on exit (SIGTERM, SIGINT, SIGHUP); on exit packets still held are accepted at once and the
// queue is unbound. Pair the rule with --queue-bypass so traffic passes if this program is gone.
//
// Build: gcc -O2 -Wall -o shaper shaper.c -lnetfilter_queue -lnfnetlink
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <linux/netfilter.h>
#include <linux/netlink.h>
#include <libnetfilter_queue/libnetfilter_queue.h>

#ifndef SOL_NETLINK
#define SOL_NETLINK 270
#endif

static double delay_ms, jitter_ms, loss_percent;
static int normal_jitter;
static unsigned queue_num;

// --- random numbers: splitmix64 seeding xoshiro256**; repeatable for a given seed.
static uint64_t rng_state[4];
static uint64_t splitmix64(uint64_t *x) {
  uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}
static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
static uint64_t rng_next(void) {
  uint64_t *s = rng_state, result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
  s[2] ^= s[0]; s[3] ^= s[1]; s[1] ^= s[2]; s[0] ^= s[3]; s[2] ^= t; s[3] = rotl(s[3], 45);
  return result;
}
static double rng_unit(void) { return (rng_next() >> 11) * 0x1.0p-53; } // [0, 1)
static double rng_normal(void) { // Box–Muller
  double u1 = rng_unit(), u2 = rng_unit();
  if (u1 < 1e-300) u1 = 1e-300;
  return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

// --- the timer heap: packets waiting for their verdict, earliest deadline first (FIFO on ties).
struct held { uint64_t deadline, arrival, seq; uint32_t id; };
static struct held *heap;
static size_t heap_len, heap_cap;
static uint64_t next_seq;

static int earlier(const struct held *a, const struct held *b) {
  return a->deadline < b->deadline || (a->deadline == b->deadline && a->seq < b->seq);
}
static void heap_push(struct held item) {
  if (heap_len == heap_cap) {
    heap_cap = heap_cap ? heap_cap * 2 : 1024;
    heap = realloc(heap, heap_cap * sizeof *heap);
    if (!heap) { perror("shaper: realloc"); exit(1); }
  }
  size_t i = heap_len++;
  while (i > 0) {
    size_t parent = (i - 1) / 2;
    if (!earlier(&item, &heap[parent])) break;
    heap[i] = heap[parent];
    i = parent;
  }
  heap[i] = item;
}
static struct held heap_pop(void) {
  struct held top = heap[0], last = heap[--heap_len];
  size_t i = 0;
  for (;;) {
    size_t child = 2 * i + 1;
    if (child >= heap_len) break;
    if (child + 1 < heap_len && earlier(&heap[child + 1], &heap[child])) child++;
    if (!earlier(&heap[child], &last)) break;
    heap[i] = heap[child];
    i = child;
  }
  if (heap_len > 0) heap[i] = last;
  return top;
}

// --- counters
static uint64_t seen, dropped, delayed, overruns, verdict_errors;
static double held_sum_ms, held_sq_ms, held_min_ms = INFINITY, held_max_ms;

static void print_kernel_counters(void) {
  // Per network namespace: queue total copy_mode copy_range queue_dropped user_dropped id ...
  FILE *f = fopen("/proc/net/netfilter/nfnetlink_queue", "r");
  if (!f) return;
  unsigned q, portid, total, mode, range, qdropped, udropped, idseq;
  while (fscanf(f, "%u %u %u %u %u %u %u %u %*[^\n]", &q, &portid, &total, &mode, &range,
                &qdropped, &udropped, &idseq) == 8) {
    if (q == queue_num)
      printf("shaper: kernel queue %u: in queue %u, dropped when full %u, dropped by socket %u\n",
             q, total, qdropped, udropped);
  }
  fclose(f);
}

static void report(const char *why) {
  double mean = delayed ? held_sum_ms / delayed : 0;
  double var = delayed ? held_sq_ms / delayed - mean * mean : 0;
  printf("shaper: %s: seen %" PRIu64 ", dropped %" PRIu64 " (%.2f%%), delayed %" PRIu64
         ", held now %zu, socket overruns %" PRIu64 ", verdict errors %" PRIu64 "\n",
         why, seen, dropped, seen ? 100.0 * dropped / seen : 0.0, delayed, heap_len, overruns,
         verdict_errors);
  printf("shaper: %s: applied delay ms: mean %.3f, stddev %.3f, min %.3f, max %.3f\n", why, mean,
         var > 0 ? sqrt(var) : 0.0, delayed ? held_min_ms : 0.0, held_max_ms);
  print_kernel_counters();
  fflush(stdout);
}

static void release(struct nfq_q_handle *qh, struct held item, uint64_t now) {
  if (nfq_set_verdict(qh, item.id, NF_ACCEPT, 0, NULL) < 0) verdict_errors++;
  double held = (now - item.arrival) / 1e6;
  delayed++;
  held_sum_ms += held;
  held_sq_ms += held * held;
  if (held < held_min_ms) held_min_ms = held;
  if (held > held_max_ms) held_max_ms = held;
}

static int on_packet(struct nfq_q_handle *qh, struct nfgenmsg *msg, struct nfq_data *nfa, void *data) {
  (void)msg; (void)data;
  struct nfqnl_msg_packet_hdr *ph = nfq_get_msg_packet_hdr(nfa);
  if (!ph) return 0;
  uint32_t id = ntohl(ph->packet_id);
  seen++;
  if (loss_percent > 0 && rng_unit() * 100.0 < loss_percent) {
    dropped++;
    if (nfq_set_verdict(qh, id, NF_DROP, 0, NULL) < 0) verdict_errors++;
    return 0;
  }
  double d = delay_ms;
  if (jitter_ms > 0) d += normal_jitter ? jitter_ms * rng_normal() : jitter_ms * (2.0 * rng_unit() - 1.0);
  if (d < 0) d = 0;
  uint64_t now = now_ns();
  heap_push((struct held){ .deadline = now + (uint64_t)(d * 1e6), .arrival = now, .seq = next_seq++, .id = id });
  return 0;
}

static volatile sig_atomic_t stop_requested, report_requested;
static void on_signal(int sig) {
  if (sig == SIGUSR1) report_requested = 1; else stop_requested = 1;
}

static void usage(void) {
  fprintf(stderr, "usage: shaper [-d uniform|normal] QUEUE DELAY_MS JITTER_MS LOSS_PERCENT [SEED]\n");
  exit(2);
}

static double parse_number(const char *s, const char *what) {
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (errno || *end || end == s || v < 0 || !isfinite(v)) {
    fprintf(stderr, "shaper: bad %s: %s\n", what, s);
    exit(2);
  }
  return v;
}

int main(int argc, char **argv) {
  int opt;
  while ((opt = getopt(argc, argv, "d:")) != -1) {
    if (opt == 'd' && strcmp(optarg, "normal") == 0) normal_jitter = 1;
    else if (opt == 'd' && strcmp(optarg, "uniform") == 0) normal_jitter = 0;
    else usage();
  }
  int n = argc - optind;
  if (n < 4 || n > 5) usage();
  queue_num = (unsigned)parse_number(argv[optind], "queue number");
  delay_ms = parse_number(argv[optind + 1], "delay");
  jitter_ms = parse_number(argv[optind + 2], "jitter");
  loss_percent = parse_number(argv[optind + 3], "loss percent");
  if (loss_percent > 100) { fprintf(stderr, "shaper: loss percent over 100\n"); return 2; }
  uint64_t seed;
  if (n == 5) seed = strtoull(argv[optind + 4], NULL, 0);
  else seed = now_ns() ^ ((uint64_t)getpid() << 32);
  uint64_t x = seed;
  for (int i = 0; i < 4; i++) rng_state[i] = splitmix64(&x);

  // Signals are blocked except while waiting in ppoll, so none is lost between checks.
  sigset_t blocked, wait_mask;
  sigemptyset(&blocked);
  sigaddset(&blocked, SIGTERM); sigaddset(&blocked, SIGINT);
  sigaddset(&blocked, SIGHUP); sigaddset(&blocked, SIGUSR1);
  sigprocmask(SIG_BLOCK, &blocked, &wait_mask);
  struct sigaction sa = { .sa_handler = on_signal };
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, NULL); sigaction(SIGINT, &sa, NULL);
  sigaction(SIGHUP, &sa, NULL); sigaction(SIGUSR1, &sa, NULL);

  struct nfq_handle *h = nfq_open();
  if (!h) { perror("shaper: nfq_open"); return 1; }
  struct nfq_q_handle *qh = nfq_create_queue(h, (uint16_t)queue_num, on_packet, NULL);
  if (!qh) { fprintf(stderr, "shaper: cannot bind queue %u (another listener?): %s\n", queue_num, strerror(errno)); return 1; }
  if (nfq_set_mode(qh, NFQNL_COPY_META, 0) < 0) { perror("shaper: nfq_set_mode"); return 1; }
  if (nfq_set_queue_maxlen(qh, 65536) < 0) perror("shaper: nfq_set_queue_maxlen");
  if (nfq_set_queue_flags(qh, NFQA_CFG_F_FAIL_OPEN, NFQA_CFG_F_FAIL_OPEN) < 0) perror("shaper: fail-open");
  nfnl_rcvbufsiz(nfq_nfnlh(h), 16 * 1024 * 1024);
  int fd = nfq_fd(h);
  int one = 1;
  setsockopt(fd, SOL_NETLINK, NETLINK_NO_ENOBUFS, &one, sizeof one);

  printf("shaper: queue %u, delay %g ms, jitter %g ms (%s), loss %g%%, seed %" PRIu64 ": ready\n",
         queue_num, delay_ms, jitter_ms, normal_jitter ? "normal" : "uniform", loss_percent, seed);
  fflush(stdout);

  static char buf[65536] __attribute__((aligned));
  struct pollfd pfd = { .fd = fd, .events = POLLIN };
  while (!stop_requested) {
    if (report_requested) { report_requested = 0; report("counters"); }
    uint64_t now = now_ns();
    while (heap_len > 0 && heap[0].deadline <= now) release(qh, heap_pop(), now);
    struct timespec timeout, *tp = NULL;
    if (heap_len > 0) {
      uint64_t wait = heap[0].deadline - now;
      timeout.tv_sec = (time_t)(wait / 1000000000ULL);
      timeout.tv_nsec = (long)(wait % 1000000000ULL);
      tp = &timeout;
    }
    int rc = ppoll(&pfd, 1, tp, &wait_mask);
    if (rc < 0) {
      if (errno == EINTR) continue;
      perror("shaper: ppoll");
      break;
    }
    if (rc > 0 && (pfd.revents & POLLIN)) {
      // Drain what is there, but come back to the heap now and then under a flood.
      for (int i = 0; i < 256; i++) {
        ssize_t len = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
        if (len < 0) {
          if (errno == ENOBUFS) { overruns++; continue; }
          if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) perror("shaper: recv");
          break;
        }
        nfq_handle_packet(h, buf, (int)len);
      }
    }
  }

  uint64_t now = now_ns();
  while (heap_len > 0) release(qh, heap_pop(), now); // do not drop what is still held
  report("exit");
  nfq_destroy_queue(qh);
  nfq_close(h);
  return 0;
}
