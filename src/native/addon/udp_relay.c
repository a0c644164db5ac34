/*
 * UDP relay of established flows: one native thread per UDP listener moves the datagrams of
 * flows that TypeScript has opened, in batches (recvmmsg(2) / sendmmsg(2)), so the per-datagram
 * path runs no JavaScript. See native-notes/udp-batching.md and src/native/udp-relay.ts.
 *
 * Owns: the relay thread, its epoll set, the per-flow connected backend sockets, a hash from
 *       client address:port to flow slot, and per-flow counters.
 * Must not: decide anything. Policy, conntrack, states, expiry and logs stay in TypeScript: a
 *       datagram from a client with no flow here is handed to JS (batched, through a
 *       threadsafe function); JS answers udpRelayAdd (then udpRelaySend) or drops it.
 * Invariants:
 *   - every flows[] access and every use of a flow's fd holds `mu`, so JS may close a flow
 *     (udpRelayRemove) at any time without the thread touching a reused fd number;
 *   - the listening fd belongs to JS; it is only read/written here between udpRelayOpen and
 *     udpRelayClose (which joins the thread) and never closed here;
 *   - queues are bounded: RX_BATCH datagrams per recvmmsg, TX_BATCH replies per sendmmsg,
 *     UP_QUEUE upcalls waiting for JS; beyond, datagrams are dropped and counted, as a full
 *     socket buffer would drop them;
 *   - buffers are MAXDG (64 KiB) per datagram, so no datagram is ever truncated.
 *
 * Flow slot numbers are chosen by JS (0..n, reused); flows[] grows to fit. epoll tags are
 * (generation << 32 | slot), so an event for a slot removed and reused meanwhile is ignored.
 *
 * Per-flow counters (doubles, read by udpRelayStats):
 *   [0] packetsIn  [1] bytesIn  [2] packetsOut  [3] bytesOut
 *   [4] exchanges (backend→client then client→backend turns)
 *   [5] replies   (client→backend then backend→client turns)   [6] lastDir (1 client, 2 backend)
 *   [7] datagrams dropped (send to backend failed with EAGAIN/ENOBUFS)
 *
 * Faults (issue #18; udpRelayFaults, codes in faults.h, encoding in src/native/fault-codes.ts):
 * one set per relay, applied in this thread to both directions, never in JS. Each fault applies
 * to a flow with probability `toxicity`, rolled once per flow when it is added and again for every
 * flow when the set changes: the outcome is a bit mask per direction (flow_t.fmask), so a flow
 * without faults pays one branch. A faulted datagram goes through, in this order:
 *
 *   loss (drop, p)  ->  duplicate (2 copies, p)  ->  reorder (hold, p)  ->  latency (delay)
 *                                                        |                      |
 *                       released after the next datagram of the flow and direction,
 *                       or after `gap` ms; then through latency as any other
 *
 * Latency: latency ± jitter ms (uniform), but never before the previous delayed datagram of the
 * same flow and direction (due = max(now + d, lastDue)): jitter never reorders. Held and delayed
 * datagrams are copies in one min-heap per relay ordered by (due, seq), served by a timerfd armed
 * for the heap's top; at most FAULT_MEM_CAP bytes (headers included) per relay, beyond that a
 * datagram is dropped and counted (R_F_OVER_CAP). A delayed datagram whose flow went (removed,
 * slot reused: the generation differs) is dropped when due. Removing a fault stops it for new
 * datagrams; those already delayed still leave at their time.
 */
#define _GNU_SOURCE
#include <node_api.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>
#include "faults.h"
#include "result.h"
#include "sockaddr.h"

#define MAXDG 65536
#define RX_BATCH 32
#define TX_BATCH 64
#define FLOW_RX 16
#define NBUCKETS 16384
#define EV_MAX 64
#define UP_QUEUE 256
#define ADDR_TEXT 48
#define UP_HDR (8 + ADDR_TEXT)
#define NSTAT 8
#define LISTEN_TAG UINT64_MAX
#define WAKE_TAG (UINT64_MAX - 1)
#define TIMER_TAG (UINT64_MAX - 2)
#define FAULT_MEM_CAP ((size_t)4 << 20)   /* bytes of held/delayed datagrams per relay */
#define MS_NS 1000000.0
#define TIMER_SLOT_NS 250000u            /* delayed datagrams leave in 250 µs slots (arm) */

/* relay-wide counters (udpRelayInfo) */
enum { R_FWD, R_REPLIES, R_UPCALLS, R_UP_DROPPED, R_TX_DROPPED, R_FWD_DROPPED,
       R_F_LOST, R_F_DUPLICATED, R_F_REORDERED, R_F_DELAYED, R_F_OVER_CAP, R_NINFO };

/* A held (reorder) or delayed (latency) datagram, a copy; in the relay's heap until due. */
typedef struct dly {
  uint64_t due;        /* CLOCK_MONOTONIC ns */
  uint64_t seq;        /* ties: first in, first out */
  int slot;
  uint32_t gen;        /* the flow's generation: a reused slot never sends it */
  uint8_t dir;         /* 0 upstream (client -> backend), 1 downstream */
  uint8_t held;        /* reorder: released by the flow's next datagram or at `due` (the gap) */
  uint8_t cancelled;   /* held and already released: only its memory waits for `due` */
  uint8_t copies;      /* duplicate rolled before it was held */
  size_t len;
  char data[];
} dly_t;

typedef struct {
  int fd;              /* -1: free slot */
  uint32_t gen;
  int next;            /* hash chain */
  int errored;
  uint8_t key[19];     /* family, port (2), address (16) */
  struct sockaddr_storage client;
  socklen_t clientLen;
  double st[NSTAT];
  uint32_t fmask[2];   /* bit i: fault i applies to this flow, [0] upstream, [1] downstream */
  uint64_t lastDue[2]; /* latency: due time of the last delayed datagram (keeps the order) */
  dly_t *held[2];      /* reorder: the datagram held back, or NULL */
} flow_t;

typedef struct {
  int kind;            /* 1 datagrams of unknown clients, 2 flow error */
  int slot;
  int err;
  uint32_t gen;        /* kind 2: the flow's generation (udpRelayAdd's result) */
  uint32_t count;
  size_t len;
  char *buf;
} upcall_t;

typedef struct {
  int lfd, family, epfd, wakefd;
  int started, closed;
  pthread_t thr;
  pthread_mutex_t mu;
  flow_t *flows;
  int cap;
  int buckets[NBUCKETS];
  napi_threadsafe_function tsfn;
  double info[R_NINFO];
  /* faults (under mu) */
  double fp[FAULT_MAX][FAULT_REC];
  int nf;
  uint64_t rng;        /* xorshift64* state */
  dly_t **heap;
  int nheap, heapCap;
  uint64_t seq, armed; /* armed: the due time the timerfd is set to, 0 none */
  size_t faultMem;
  int tfd;
  int inTimer;         /* on_timer is sending: replies join the tx batch */
  /* thread-private */
  struct mmsghdr rx[RX_BATCH];
  struct iovec rxiov[RX_BATCH];
  struct sockaddr_storage rxaddr[RX_BATCH];
  char *rxbuf;
  struct mmsghdr up[RX_BATCH];       /* one flow's run of the batch, to its connected socket */
  struct iovec upiov[RX_BATCH];
  struct mmsghdr tx[TX_BATCH];
  struct iovec txiov[TX_BATCH];
  struct sockaddr_storage txaddr[TX_BATCH];
  char *txbuf;
  int ntx;
} relay_t;

/* ------------------------------------------------------------------ flow table */

static void key_of(const struct sockaddr_storage *sa, uint8_t key[19]) {
  memset(key, 0, 19);
  if (sa->ss_family == AF_INET) {
    const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
    key[0] = 4;
    memcpy(key + 1, &a->sin_port, 2);
    memcpy(key + 3, &a->sin_addr, 4);
  } else {
    const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;
    key[0] = 6;
    memcpy(key + 1, &a->sin6_port, 2);
    memcpy(key + 3, &a->sin6_addr, 16);
  }
}

static unsigned bucket_of(const uint8_t key[19]) {
  uint32_t h = 2166136261u;                    /* FNV-1a */
  for (int i = 0; i < 19; i++) { h ^= key[i]; h *= 16777619u; }
  return h & (NBUCKETS - 1);
}

/* Precondition: mu held. Returns the slot or -1. */
static int lookup(relay_t *r, const uint8_t key[19]) {
  for (int s = r->buckets[bucket_of(key)]; s >= 0; s = r->flows[s].next)
    if (memcmp(r->flows[s].key, key, 19) == 0) return s;
  return -1;
}

static void unlink_flow(relay_t *r, int slot) {
  int *p = &r->buckets[bucket_of(r->flows[slot].key)];
  while (*p >= 0 && *p != slot) p = &r->flows[*p].next;
  if (*p == slot) *p = r->flows[slot].next;
  r->flows[slot].next = -1;
}

static void count_in(flow_t *f, size_t len) {
  f->st[0] += 1; f->st[1] += (double)len;
  if (f->st[6] == 2) f->st[4] += 1;
  f->st[6] = 1;
}

static void count_out(flow_t *f, size_t len) {
  f->st[2] += 1; f->st[3] += (double)len;
  if (f->st[6] == 1) f->st[5] += 1;
  f->st[6] = 2;
}

/* ------------------------------------------------------------------ upcalls to JS */

static void upcall(relay_t *r, upcall_t *u) {
  if (napi_call_threadsafe_function(r->tsfn, u, napi_tsfn_nonblocking) != napi_ok) {
    r->info[R_UP_DROPPED] += u->kind == 1 ? u->count : 1;
    free(u->buf);
    free(u);
  } else {
    r->info[R_UPCALLS] += 1;
  }
}

/* Precondition: mu held. The flow stops being polled; JS drops it (and marks the backend down). */
static void flow_error(relay_t *r, int slot, int err) {
  flow_t *f = &r->flows[slot];
  if (f->errored) return;
  f->errored = 1;
  epoll_ctl(r->epfd, EPOLL_CTL_DEL, f->fd, NULL);
  upcall_t *u = calloc(1, sizeof *u);
  if (!u) return;
  u->kind = 2; u->slot = slot; u->err = err; u->gen = f->gen;
  upcall(r, u);
}

static void put_le(char *p, uint32_t v, int n) { for (int i = 0; i < n; i++) p[i] = (char)((v >> (8 * i)) & 0xff); }

/*
 * Record of one datagram in a kind-1 upcall buffer (little-endian):
 *   u16 port | u8 family (4/6) | u8 0 | u32 length | 48 bytes address text, NUL-padded | payload
 */
static size_t put_record(char *p, const struct sockaddr_storage *sa, const char *data, size_t len) {
  uint16_t port;
  memset(p, 0, UP_HDR);
  if (sa->ss_family == AF_INET) {
    const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
    port = ntohs(a->sin_port); p[2] = 4;
    inet_ntop(AF_INET, &a->sin_addr, p + 8, ADDR_TEXT);
  } else {
    const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;
    port = ntohs(a->sin6_port); p[2] = 6;
    inet_ntop(AF_INET6, &a->sin6_addr, p + 8, ADDR_TEXT);
  }
  put_le(p, port, 2);
  put_le(p + 4, (uint32_t)len, 4);
  memcpy(p + UP_HDR, data, len);
  return UP_HDR + len;
}


/* ------------------------------------------------------------------ faults */

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Uniform in [0, 1). Precondition: mu held (the thread and JS both roll). */
static double rnd(relay_t *r) {
  uint64_t x = r->rng;
  x ^= x >> 12; x ^= x << 25; x ^= x >> 27;
  r->rng = x;
  return (double)((x * 2685821657736338717ull) >> 11) * (1.0 / 9007199254740992.0);
}

static int dly_before(const dly_t *a, const dly_t *b) { return a->due < b->due || (a->due == b->due && a->seq < b->seq); }

static int heap_push(relay_t *r, dly_t *it) {
  if (r->nheap == r->heapCap) {
    int ncap = r->heapCap ? r->heapCap * 2 : 256;
    dly_t **nh = realloc(r->heap, (size_t)ncap * sizeof *nh);
    if (!nh) return -1;
    r->heap = nh; r->heapCap = ncap;
  }
  int i = r->nheap++;
  while (i > 0) {
    int p = (i - 1) / 2;
    if (!dly_before(it, r->heap[p])) break;
    r->heap[i] = r->heap[p];
    i = p;
  }
  r->heap[i] = it;
  return 0;
}

static dly_t *heap_pop(relay_t *r) {
  dly_t *top = r->heap[0], *last = r->heap[--r->nheap];
  int i = 0, n = r->nheap;
  for (;;) {
    int c = 2 * i + 1;
    if (c >= n) break;
    if (c + 1 < n && dly_before(r->heap[c + 1], r->heap[c])) c++;
    if (!dly_before(r->heap[c], last)) break;
    r->heap[i] = r->heap[c];
    i = c;
  }
  if (n > 0) r->heap[i] = last;
  return top;
}

/* Sets the timerfd to the heap's top (absolute), rounded up to the next TIMER_SLOT_NS, or
 * disarms it. One wake-up serves every datagram due in the slot: never early, late by < 250 µs.
 * Precondition: mu held. */
static void arm(relay_t *r) {
  uint64_t due = r->nheap > 0 ? (r->heap[0]->due + TIMER_SLOT_NS - 1) / TIMER_SLOT_NS * TIMER_SLOT_NS : 0;
  if (due == r->armed) return;
  struct itimerspec its;
  memset(&its, 0, sizeof its);
  its.it_value.tv_sec = (time_t)(due / 1000000000u);
  its.it_value.tv_nsec = (long)(due % 1000000000u);
  if (timerfd_settime(r->tfd, TFD_TIMER_ABSTIME, &its, NULL) == 0) r->armed = due;
}

static size_t dly_cost(size_t len) { return sizeof(dly_t) + len; }

/* A copy of the datagram for the heap, or NULL (counted) when the relay's cap is reached. */
static dly_t *dly_new(relay_t *r, const char *data, size_t len) {
  if (r->faultMem + dly_cost(len) > FAULT_MEM_CAP) { r->info[R_F_OVER_CAP] += 1; return NULL; }
  dly_t *it = malloc(dly_cost(len));
  if (!it) { r->info[R_F_OVER_CAP] += 1; return NULL; }
  memset(it, 0, sizeof *it);
  memcpy(it->data, data, len);
  it->len = len;
  it->seq = ++r->seq;
  it->copies = 1;
  r->faultMem += dly_cost(len);
  return it;
}

static void dly_free(relay_t *r, dly_t *it) {
  r->faultMem -= dly_cost(it->len);
  free(it);
}

static int dly_enqueue(relay_t *r, dly_t *it, int slot, uint32_t gen, int dir, uint64_t due) {
  it->slot = slot; it->gen = gen; it->dir = (uint8_t)dir; it->due = due;
  if (heap_push(r, it) < 0) { r->info[R_F_OVER_CAP] += 1; dly_free(r, it); return -1; }
  return 0;
}

static void flow_error(relay_t *r, int slot, int err);
static void flush_tx(relay_t *r);

/* A reply joins the thread's sendmmsg batch (flushed after this round of events). Only from
 * on_timer: on_flow receives into the same slots past ntx. Precondition: mu held, thread. */
static void queue_reply(relay_t *r, flow_t *f, const char *data, size_t len) {
  if (r->ntx == TX_BATCH) flush_tx(r);
  int i = r->ntx++;
  char *buf = r->txbuf + (size_t)i * MAXDG;
  memcpy(buf, data, len);
  r->txiov[i].iov_base = buf;
  r->txiov[i].iov_len = len;
  memcpy(&r->txaddr[i], &f->client, f->clientLen);
  memset(&r->tx[i].msg_hdr, 0, sizeof r->tx[i].msg_hdr);
  r->tx[i].msg_hdr.msg_iov = &r->txiov[i];
  r->tx[i].msg_hdr.msg_iovlen = 1;
  r->tx[i].msg_hdr.msg_name = &r->txaddr[i];
  r->tx[i].msg_hdr.msg_namelen = f->clientLen;
}

/* One datagram out now: upstream on the flow's backend socket, downstream from the listening
 * socket to the client. Precondition: mu held, f is slot's live flow. */
static void send_now(relay_t *r, flow_t *f, int slot, int dir, const char *data, size_t len) {
  if (f->errored) return;
  if (dir == 0) {
    ssize_t w = send(f->fd, data, len, MSG_DONTWAIT);
    if (w >= 0) r->info[R_FWD] += 1;
    else if (errno == ECONNREFUSED) flow_error(r, slot, errno);
    else { f->st[7] += 1; r->info[R_FWD_DROPPED] += 1; }
  } else if (r->inTimer) {
    queue_reply(r, f, data, len);      /* the due replies of one timer slot leave in one sendmmsg */
  } else {
    ssize_t w = sendto(r->lfd, data, len, MSG_DONTWAIT, (const struct sockaddr *)&f->client, f->clientLen);
    if (w >= 0) r->info[R_REPLIES] += 1;
    else r->info[R_TX_DROPPED] += 1;
  }
}

/* The last stage: latency (sum of the flow's latency faults in this direction, each
 * latency ± jitter), never before the previous delayed datagram of the flow and direction. */
static void stage_latency(relay_t *r, flow_t *f, int slot, int dir, const char *data, size_t len, uint64_t now) {
  double ms = 0;
  uint32_t m = f->fmask[dir];
  for (int i = 0; m; i++, m >>= 1) {
    if (!(m & 1) || (int)r->fp[i][0] != FT_LATENCY) continue;
    ms += r->fp[i][3] + r->fp[i][4] * (2 * rnd(r) - 1);
  }
  uint64_t due = now + (uint64_t)(ms > 0 ? ms * MS_NS : 0);
  if (due < f->lastDue[dir]) due = f->lastDue[dir];
  if (due <= now) { send_now(r, f, slot, dir, data, len); return; }
  dly_t *it = dly_new(r, data, len);
  if (!it) return;
  if (dly_enqueue(r, it, slot, f->gen, dir, due) < 0) return;
  f->lastDue[dir] = due;
  r->info[R_F_DELAYED] += 1;
}

/* A datagram of a flow with faults in `dir` (f->fmask[dir] != 0). Precondition: mu held. */
static void fault_path(relay_t *r, flow_t *f, int slot, int dir, const char *data, size_t len) {
  uint64_t now = now_ns();
  uint32_t m = f->fmask[dir];
  int copies = 1, hold = 0;
  double gapMs = 0;
  for (int i = 0; m; i++, m >>= 1) {
    if (!(m & 1)) continue;
    const double *p = r->fp[i];
    switch ((int)p[0]) {
      case FT_LOSS:
        if (rnd(r) < p[3]) { r->info[R_F_LOST] += 1; return; }
        break;
      case FT_DUPLICATE:
        if (rnd(r) < p[3]) copies = 2;
        break;
      case FT_REORDER:
        if (!hold && f->held[dir] == NULL && rnd(r) < p[3]) { hold = 1; gapMs = p[4]; }
        break;
      default: break;
    }
  }
  if (copies == 2) r->info[R_F_DUPLICATED] += 1;
  if (hold) {
    dly_t *it = dly_new(r, data, len);
    if (!it) return;
    it->held = 1;
    it->copies = (uint8_t)copies;
    if (dly_enqueue(r, it, slot, f->gen, dir, now + (uint64_t)(gapMs * MS_NS)) < 0) return;
    f->held[dir] = it;
    r->info[R_F_REORDERED] += 1;
    arm(r);
    return;
  }
  for (int c = 0; c < copies; c++) stage_latency(r, f, slot, dir, data, len, now);
  dly_t *h = f->held[dir];
  if (h) {
    /* The held one goes after this one; its heap entry stays as a tombstone until its gap. */
    f->held[dir] = NULL;
    for (int c = 0; c < h->copies; c++) stage_latency(r, f, slot, dir, h->data, h->len, now);
    h->cancelled = 1;
  }
  arm(r);
}

/* The timerfd fired: everything due leaves (in (due, seq) order), then the timer is re-armed. */
static void on_timer(relay_t *r) {
  uint64_t x;
  ssize_t n = read(r->tfd, &x, sizeof x);
  (void)n;
  pthread_mutex_lock(&r->mu);
  r->armed = 0;
  r->inTimer = 1;
  uint64_t now = now_ns();
  while (r->nheap > 0 && r->heap[0]->due <= now) {
    dly_t *it = heap_pop(r);
    flow_t *f = it->slot < r->cap ? &r->flows[it->slot] : NULL;
    if (!it->cancelled && f && f->fd >= 0 && f->gen == it->gen && !f->errored) {
      if (!it->held) send_now(r, f, it->slot, it->dir, it->data, it->len);
      else if (f->held[it->dir] == it) {
        f->held[it->dir] = NULL;   /* no next datagram within the gap */
        for (int c = 0; c < it->copies; c++) stage_latency(r, f, it->slot, it->dir, it->data, it->len, now);
      }
    }
    dly_free(r, it);
  }
  r->inTimer = 0;
  arm(r);
  pthread_mutex_unlock(&r->mu);
}

static int fault_known(int code) { return code == FT_LATENCY || code == FT_LOSS || code == FT_DUPLICATE || code == FT_REORDER; }

/* Rolls each fault's toxicity for the flow. Precondition: mu held. */
static void roll_flow(relay_t *r, flow_t *f) {
  f->fmask[0] = f->fmask[1] = 0;
  for (int i = 0; i < r->nf; i++) {
    const double *p = r->fp[i];
    if (!fault_known((int)p[0])) continue;
    if (rnd(r) < p[2]) f->fmask[p[1] != 0] |= 1u << i;
  }
}

/* ------------------------------------------------------------------ the thread */

static void flush_tx(relay_t *r) {
  int sent = 0;
  while (sent < r->ntx) {
    int k = sendmmsg(r->lfd, &r->tx[sent], (unsigned)(r->ntx - sent), MSG_DONTWAIT);
    if (k < 0) {
      if (errno == EINTR) continue;
      r->info[R_TX_DROPPED] += 1;   /* EAGAIN (buffer full) or a bad destination: drop this one */
      sent++;
      continue;
    }
    r->info[R_REPLIES] += k;
    sent += k;
  }
  r->ntx = 0;
}

/* Precondition: mu held; slots[j] == s for the datagrams idx[0..n) of the batch, in order.
 * Forwards them on the flow's connected socket: one send(2), or one sendmmsg(2) for a run. */
static void forward_run(relay_t *r, flow_t *f, int s, const int *idx, int n) {
  for (int q = 0; q < n; q++) {
    int j = idx[q];
    r->upiov[q].iov_base = r->rxiov[j].iov_base;
    r->upiov[q].iov_len = r->rx[j].msg_len;
  }
  int sent = 0;
  while (sent < n) {
    int k;
    if (n - sent == 1) k = send(f->fd, r->upiov[sent].iov_base, r->upiov[sent].iov_len, MSG_DONTWAIT) >= 0 ? 1 : -1;
    else k = sendmmsg(f->fd, &r->up[sent], (unsigned)(n - sent), MSG_DONTWAIT);
    if (k < 0) {
      if (errno == EINTR) continue;
      if (errno == ECONNREFUSED) { flow_error(r, s, errno); return; }
      f->st[7] += 1; r->info[R_FWD_DROPPED] += 1;   /* EAGAIN/ENOBUFS: this one is dropped */
      sent++;
      continue;
    }
    for (int q = 0; q < k; q++) count_in(f, r->upiov[sent + q].iov_len);
    r->info[R_FWD] += k;
    sent += k;
  }
}

static void on_listen(relay_t *r) {
  for (int round = 0; round < 4; round++) {
    /* The headers are set once in relay_open; the kernel rewrites only msg_namelen and msg_len. */
    for (int i = 0; i < RX_BATCH; i++) r->rx[i].msg_hdr.msg_namelen = sizeof r->rxaddr[i];
    int m = recvmmsg(r->lfd, r->rx, RX_BATCH, MSG_DONTWAIT, NULL);
    if (m <= 0) return;
    size_t upLen = 0;
    uint32_t upCount = 0;
    int slots[RX_BATCH], run[RX_BATCH];
    uint8_t done[RX_BATCH];
    uint8_t key[19];
    pthread_mutex_lock(&r->mu);
    for (int i = 0; i < m; i++) {
      key_of(&r->rxaddr[i], key);
      slots[i] = lookup(r, key);
      done[i] = 0;
      if (slots[i] < 0) { upLen += UP_HDR + r->rx[i].msg_len; upCount++; }
    }
    /* A flow's datagrams of this batch leave together, in their order: a client that got a burst
     * of replies answers with a burst, so runs are common (scripts/bench/udp.ts, bench-results). */
    for (int i = 0; i < m; i++) {
      int s = slots[i];
      if (s < 0 || done[i]) continue;
      flow_t *f = &r->flows[s];
      if (f->errored) continue;
      if (f->fmask[0]) { count_in(f, r->rx[i].msg_len); fault_path(r, f, s, 0, r->rxiov[i].iov_base, r->rx[i].msg_len); continue; }
      int n = 0;
      for (int j = i; j < m; j++) if (slots[j] == s) { done[j] = 1; run[n++] = j; }
      forward_run(r, f, s, run, n);
    }
    pthread_mutex_unlock(&r->mu);
    if (upCount > 0) {
      upcall_t *u = calloc(1, sizeof *u);
      char *buf = malloc(upLen);
      if (!u || !buf) { free(u); free(buf); r->info[R_UP_DROPPED] += upCount; }
      else {
        size_t off = 0;
        for (int i = 0; i < m; i++)
          if (slots[i] < 0) off += put_record(buf + off, &r->rxaddr[i], r->rxiov[i].iov_base, r->rx[i].msg_len);
        u->kind = 1; u->count = upCount; u->len = upLen; u->buf = buf;
        upcall(r, u);
      }
    }
    if (m < RX_BATCH) return;
  }
}

static void on_flow(relay_t *r, uint64_t tag) {
  int slot = (int)(tag & 0xffffffffu);
  uint32_t gen = (uint32_t)(tag >> 32);
  pthread_mutex_lock(&r->mu);
  for (int round = 0; round < 4; round++) {
    if (slot >= r->cap) break;
    flow_t *f = &r->flows[slot];
    if (f->fd < 0 || f->gen != gen || f->errored) break;
    if (r->ntx == TX_BATCH) flush_tx(r);
    int want = TX_BATCH - r->ntx;
    if (want > FLOW_RX) want = FLOW_RX;
    for (int k = 0; k < want; k++) {
      int i = r->ntx + k;
      r->txiov[i].iov_base = r->txbuf + (size_t)i * MAXDG;
      r->txiov[i].iov_len = MAXDG;
      memset(&r->tx[i].msg_hdr, 0, sizeof r->tx[i].msg_hdr);
      r->tx[i].msg_hdr.msg_iov = &r->txiov[i];
      r->tx[i].msg_hdr.msg_iovlen = 1;
    }
    int m = recvmmsg(f->fd, &r->tx[r->ntx], (unsigned)want, MSG_DONTWAIT, NULL);
    if (m < 0) {
      if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) flow_error(r, slot, errno);
      break;
    }
    if (f->fmask[1]) {
      /* Faulted: each datagram goes its own way; the batch slots are reused. */
      for (int k = 0; k < m; k++) {
        int i = r->ntx + k;
        count_out(f, r->tx[i].msg_len);
        fault_path(r, f, slot, 1, r->txbuf + (size_t)i * MAXDG, r->tx[i].msg_len);
      }
      if (m < want) break;
      continue;
    }
    for (int k = 0; k < m; k++) {
      int i = r->ntx + k;
      r->txiov[i].iov_len = r->tx[i].msg_len;
      memcpy(&r->txaddr[i], &f->client, f->clientLen);
      r->tx[i].msg_hdr.msg_name = &r->txaddr[i];
      r->tx[i].msg_hdr.msg_namelen = f->clientLen;
      count_out(f, r->tx[i].msg_len);
    }
    r->ntx += m;
    if (m < want) break;
  }
  pthread_mutex_unlock(&r->mu);
}

static void *relay_main(void *arg) {
  relay_t *r = arg;
  struct epoll_event ev[EV_MAX];
  for (;;) {
    int n = epoll_wait(r->epfd, ev, EV_MAX, -1);
    if (n < 0) { if (errno == EINTR) continue; break; }
    for (int i = 0; i < n; i++) {
      uint64_t tag = ev[i].data.u64;
      if (tag == WAKE_TAG) return NULL;
      if (tag == LISTEN_TAG) on_listen(r);
      else if (tag == TIMER_TAG) on_timer(r);
      else on_flow(r, tag);
    }
    if (r->ntx > 0) flush_tx(r);
  }
  return NULL;
}

/* ------------------------------------------------------------------ JS side */

static void call_js(napi_env env, napi_value cb, void *context, void *data) {
  upcall_t *u = data;
  if (env != NULL && cb != NULL) {
    napi_value undef, argv[4];
    int ok = napi_get_undefined(env, &undef) == napi_ok && napi_create_int32(env, u->kind, &argv[0]) == napi_ok;
    if (ok && u->kind == 1) {
      void *copy;
      ok = napi_create_buffer_copy(env, u->len, u->buf, &copy, &argv[1]) == napi_ok &&
           napi_create_uint32(env, u->count, &argv[2]) == napi_ok && napi_get_undefined(env, &argv[3]) == napi_ok;
    } else if (ok) {
      ok = napi_create_int32(env, u->slot, &argv[1]) == napi_ok && napi_create_int32(env, u->err, &argv[2]) == napi_ok &&
           napi_create_uint32(env, u->gen, &argv[3]) == napi_ok;
    }
    if (ok) napi_call_function(env, undef, cb, 4, argv, NULL);
  }
  free(u->buf);
  free(u);
}

static void relay_stop(relay_t *r) {
  if (r->closed) return;
  r->closed = 1;
  if (r->started) {
    uint64_t one = 1;
    ssize_t w = write(r->wakefd, &one, sizeof one);
    (void)w;
    pthread_join(r->thr, NULL);
    r->started = 0;
  }
  pthread_mutex_lock(&r->mu);
  for (int s = 0; s < r->cap; s++) if (r->flows[s].fd >= 0) { close(r->flows[s].fd); r->flows[s].fd = -1; }
  pthread_mutex_unlock(&r->mu);
  if (r->epfd >= 0) close(r->epfd);
  if (r->wakefd >= 0) close(r->wakefd);
  if (r->tfd >= 0) close(r->tfd);
  r->epfd = r->wakefd = r->tfd = -1;
  while (r->nheap > 0) dly_free(r, heap_pop(r));
  free(r->heap); r->heap = NULL; r->heapCap = 0;
  if (r->tsfn) napi_release_threadsafe_function(r->tsfn, napi_tsfn_release);
  r->tsfn = NULL;
  free(r->flows); r->flows = NULL; r->cap = 0;
  free(r->rxbuf); r->rxbuf = NULL;
  free(r->txbuf); r->txbuf = NULL;
}

static void relay_finalize(napi_env env, void *data, void *hint) {
  relay_t *r = data;
  relay_stop(r);
  pthread_mutex_destroy(&r->mu);
  free(r);
}

static relay_t *get_relay(napi_env env, napi_value v) {
  void *p = NULL;
  if (napi_get_value_external(env, v, &p) != napi_ok) return NULL;
  relay_t *r = p;
  return r && !r->closed ? r : NULL;
}

static int get_args(napi_env env, napi_callback_info info, size_t want, napi_value *argv) {
  size_t argc = want;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return 0;
  return argc >= want;
}

#define number make_number   /* result.h */

/* Text address + port → sockaddr; family 0 = whichever the text is. Returns the length or 0. */
static socklen_t parse_addr(napi_env env, napi_value v, int port, struct sockaddr_storage *sa) {
  char text[64];
  size_t n = 0;
  if (napi_get_value_string_utf8(env, v, text, sizeof text, &n) != napi_ok) return 0;
  return make_addr(0, text, port, sa);
}

/*
 * udpRelayOpen(listenFd, family, callback) → external handle | { errno, syscall }
 * callback(1, batch: Buffer, count) | callback(2, slot, errno, generation)
 */
static napi_value relay_open(napi_env env, napi_callback_info info) {
  napi_value argv[3], out, name;
  int32_t lfd, family;
  if (!get_args(env, info, 3, argv)) return make_failure(env, EINVAL, "udpRelayOpen");
  CHECK(napi_get_value_int32(env, argv[0], &lfd));
  CHECK(napi_get_value_int32(env, argv[1], &family));
  relay_t *r = calloc(1, sizeof *r);
  if (!r) return make_failure(env, ENOMEM, "malloc");
  r->lfd = lfd; r->family = family; r->epfd = r->wakefd = r->tfd = -1;
  if (getrandom(&r->rng, sizeof r->rng, GRND_NONBLOCK) != (ssize_t)sizeof r->rng) r->rng = now_ns() ^ (uint64_t)(uintptr_t)r;
  if (r->rng == 0) r->rng = 0x9e3779b97f4a7c15ull;
  pthread_mutex_init(&r->mu, NULL);
  for (int i = 0; i < NBUCKETS; i++) r->buckets[i] = -1;
  r->rxbuf = malloc((size_t)RX_BATCH * MAXDG);
  r->txbuf = malloc((size_t)TX_BATCH * MAXDG);
  int err = 0;
  const char *sys = "malloc";
  if (!r->rxbuf || !r->txbuf) err = ENOMEM;
  for (int i = 0; !err && i < RX_BATCH; i++) {
    r->rxiov[i].iov_base = r->rxbuf + (size_t)i * MAXDG;
    r->rxiov[i].iov_len = MAXDG;
    r->rx[i].msg_hdr.msg_iov = &r->rxiov[i];
    r->rx[i].msg_hdr.msg_iovlen = 1;
    r->rx[i].msg_hdr.msg_name = &r->rxaddr[i];
    r->up[i].msg_hdr.msg_iov = &r->upiov[i];
    r->up[i].msg_hdr.msg_iovlen = 1;
  }
  if (!err && (r->epfd = epoll_create1(EPOLL_CLOEXEC)) < 0) { err = errno; sys = "epoll_create1"; }
  if (!err && (r->wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0) { err = errno; sys = "eventfd"; }
  if (!err && (r->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK)) < 0) { err = errno; sys = "timerfd_create"; }
  if (!err) {
    struct epoll_event ev = { .events = EPOLLIN, .data.u64 = WAKE_TAG };
    if (epoll_ctl(r->epfd, EPOLL_CTL_ADD, r->wakefd, &ev) < 0) { err = errno; sys = "epoll_ctl"; }
    ev.data.u64 = TIMER_TAG;
    if (!err && epoll_ctl(r->epfd, EPOLL_CTL_ADD, r->tfd, &ev) < 0) { err = errno; sys = "epoll_ctl"; }
    ev.data.u64 = LISTEN_TAG;
    if (!err && epoll_ctl(r->epfd, EPOLL_CTL_ADD, lfd, &ev) < 0) { err = errno; sys = "epoll_ctl"; }
  }
  if (!err) {
    CHECK(napi_create_string_utf8(env, "sgemu-udp-relay", NAPI_AUTO_LENGTH, &name));
    if (napi_create_threadsafe_function(env, argv[2], NULL, name, UP_QUEUE, 1, NULL, NULL, NULL, call_js, &r->tsfn) != napi_ok) {
      err = EINVAL; sys = "napi_create_threadsafe_function";
    }
  }
  if (!err) {
    /* The thread starts with every signal blocked: signals stay with Node's own threads. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int e = pthread_create(&r->thr, NULL, relay_main, r);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (e != 0) { err = e; sys = "pthread_create"; }
    else { r->started = 1; pthread_setname_np(r->thr, "sgemu-udp"); }   /* top -H, perf, tests */
  }
  if (err) {
    relay_stop(r);
    pthread_mutex_destroy(&r->mu);
    free(r);
    return make_failure(env, err, sys);
  }
  if (napi_create_external(env, r, relay_finalize, NULL, &out) != napi_ok) {
    relay_finalize(env, r, NULL);
    return NULL;
  }
  return out;
}

/*
 * udpRelayAdd(h, slot, clientAddr, clientPort, backendAddr, backendPort, localAddr | null)
 *   → the flow's generation (≥ 1; flow errors carry it, so a late error never hits a reused slot)
 * socket(SOCK_DGRAM|SOCK_NONBLOCK|SOCK_CLOEXEC), bind(localAddr:0) when given, connect(backend),
 * then the flow is in the hash and polled.
 */
static napi_value relay_add(napi_env env, napi_callback_info info) {
  napi_value argv[7];
  if (!get_args(env, info, 7, argv)) return make_failure(env, EINVAL, "udpRelayAdd");
  relay_t *r = get_relay(env, argv[0]);
  if (!r) return make_failure(env, EBADF, "udpRelayAdd");
  int32_t slot, cport, bport;
  CHECK(napi_get_value_int32(env, argv[1], &slot));
  CHECK(napi_get_value_int32(env, argv[3], &cport));
  CHECK(napi_get_value_int32(env, argv[5], &bport));
  struct sockaddr_storage client, backend, local;
  socklen_t clen = parse_addr(env, argv[2], cport, &client);
  socklen_t blen = parse_addr(env, argv[4], bport, &backend);
  napi_valuetype lt;
  CHECK(napi_typeof(env, argv[6], &lt));
  socklen_t llen = lt == napi_string ? parse_addr(env, argv[6], 0, &local) : 0;
  if (slot < 0 || slot > (1 << 24) || clen == 0 || blen == 0 || (lt == napi_string && llen == 0) ||
      (llen && local.ss_family != backend.ss_family)) return make_failure(env, EINVAL, "udpRelayAdd");
  int fd = socket(backend.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return make_failure(env, errno, "socket");
  if (llen && bind(fd, (struct sockaddr *)&local, llen) < 0) { int e = errno; close(fd); return make_failure(env, e, "bind"); }
  if (connect(fd, (struct sockaddr *)&backend, blen) < 0) { int e = errno; close(fd); return make_failure(env, e, "connect"); }
  uint8_t key[19];
  key_of(&client, key);
  pthread_mutex_lock(&r->mu);
  int err = 0;
  uint32_t gen = 0;
  const char *sys = "udpRelayAdd";
  if (slot >= r->cap) {
    int ncap = r->cap ? r->cap : 1024;
    while (ncap <= slot) ncap *= 2;
    flow_t *nf = realloc(r->flows, (size_t)ncap * sizeof *nf);
    if (!nf) err = ENOMEM;
    else {
      for (int s = r->cap; s < ncap; s++) { memset(&nf[s], 0, sizeof nf[s]); nf[s].fd = -1; nf[s].next = -1; }
      r->flows = nf; r->cap = ncap;
    }
  }
  if (!err && (r->flows[slot].fd >= 0 || lookup(r, key) >= 0)) err = EEXIST;
  if (!err) {
    flow_t *f = &r->flows[slot];
    gen = f->gen + 1;
    if (gen == 0) gen = 1;
    memset(f, 0, sizeof *f);
    f->fd = fd; f->gen = gen; f->errored = 0;
    memcpy(f->key, key, 19);
    memcpy(&f->client, &client, clen); f->clientLen = clen;
    roll_flow(r, f);
    unsigned b = bucket_of(key);
    f->next = r->buckets[b]; r->buckets[b] = slot;
    struct epoll_event ev = { .events = EPOLLIN, .data.u64 = ((uint64_t)gen << 32) | (uint32_t)slot };
    if (epoll_ctl(r->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
      err = errno; sys = "epoll_ctl";
      unlink_flow(r, slot);
      f->fd = -1;
    }
  }
  pthread_mutex_unlock(&r->mu);
  if (err) { close(fd); return make_failure(env, err, sys); }
  return number(env, gen);
}

/* udpRelaySend(h, slot, buffer) → bytes sent | { errno, syscall } (client → backend, counted) */
static napi_value relay_send(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  if (!get_args(env, info, 3, argv)) return make_failure(env, EINVAL, "udpRelaySend");
  relay_t *r = get_relay(env, argv[0]);
  if (!r) return make_failure(env, EBADF, "udpRelaySend");
  int32_t slot;
  void *data;
  size_t len;
  CHECK(napi_get_value_int32(env, argv[1], &slot));
  CHECK(napi_get_buffer_info(env, argv[2], &data, &len));
  pthread_mutex_lock(&r->mu);
  ssize_t w = -1;
  int err = EBADF;
  if (slot >= 0 && slot < r->cap && r->flows[slot].fd >= 0 && !r->flows[slot].errored) {
    flow_t *f = &r->flows[slot];
    if (f->fmask[0]) {
      /* The first datagram (handed to JS) takes the same faults as the relayed ones. */
      count_in(f, len);
      fault_path(r, f, slot, 0, data, len);
      w = (ssize_t)len;
    } else {
      w = send(f->fd, data, len, MSG_DONTWAIT);
      err = errno;
      if (w >= 0) count_in(f, len);
      else if (err != ECONNREFUSED) f->st[7] += 1;
    }
  }
  pthread_mutex_unlock(&r->mu);
  if (w < 0) return make_failure(env, err, "send");
  return number(env, (double)w);
}

/* udpRelayRemove(h, slot) → 0: stop polling, close the backend socket, free the slot. */
static napi_value relay_remove(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!get_args(env, info, 2, argv)) return make_failure(env, EINVAL, "udpRelayRemove");
  relay_t *r = get_relay(env, argv[0]);
  if (!r) return number(env, 0);
  int32_t slot;
  CHECK(napi_get_value_int32(env, argv[1], &slot));
  pthread_mutex_lock(&r->mu);
  if (slot >= 0 && slot < r->cap && r->flows[slot].fd >= 0) {
    flow_t *f = &r->flows[slot];
    epoll_ctl(r->epfd, EPOLL_CTL_DEL, f->fd, NULL);
    close(f->fd);
    f->fd = -1;
    f->gen++;
    unlink_flow(r, slot);
  }
  pthread_mutex_unlock(&r->mu);
  return number(env, 0);
}

/* udpRelayStats(h, slot, Float64Array(8)) → 0: copies the flow's counters. */
static napi_value relay_stats(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  if (!get_args(env, info, 3, argv)) return make_failure(env, EINVAL, "udpRelayStats");
  relay_t *r = get_relay(env, argv[0]);
  int32_t slot;
  CHECK(napi_get_value_int32(env, argv[1], &slot));
  napi_typedarray_type type;
  size_t len;
  void *data;
  CHECK(napi_get_typedarray_info(env, argv[2], &type, &len, &data, NULL, NULL));
  if (type != napi_float64_array || len < NSTAT) return make_failure(env, EINVAL, "udpRelayStats");
  if (!r) return make_failure(env, EBADF, "udpRelayStats");
  pthread_mutex_lock(&r->mu);
  int ok = slot >= 0 && slot < r->cap && r->flows[slot].fd >= 0;
  if (ok) memcpy(data, r->flows[slot].st, sizeof r->flows[slot].st);
  pthread_mutex_unlock(&r->mu);
  return ok ? number(env, 0) : make_failure(env, ENOENT, "udpRelayStats");
}

/* udpRelayInfo(h, Float64Array(11)) → 0: forwarded, replies, upcalls, upcall drops, reply drops, forward drops,
 * then faults: lost, duplicated, held back (reorder), delayed (latency), dropped over the memory cap. */
static napi_value relay_info(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!get_args(env, info, 2, argv)) return make_failure(env, EINVAL, "udpRelayInfo");
  relay_t *r = get_relay(env, argv[0]);
  napi_typedarray_type type;
  size_t len;
  void *data;
  CHECK(napi_get_typedarray_info(env, argv[1], &type, &len, &data, NULL, NULL));
  if (type != napi_float64_array || len < R_NINFO) return make_failure(env, EINVAL, "udpRelayInfo");
  if (!r) return make_failure(env, EBADF, "udpRelayInfo");
  pthread_mutex_lock(&r->mu);
  memcpy(data, r->info, sizeof r->info);
  pthread_mutex_unlock(&r->mu);
  return number(env, 0);
}

/*
 * udpRelayFaults(h, Float64Array) → 0 | { errno, syscall }: replaces the relay's fault set
 * (FAULT_REC numbers per fault, at most FAULT_MAX; empty: none) and rolls every live flow's
 * toxicity again. Every number is range-checked: the array comes from JS.
 */
static napi_value relay_faults(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!get_args(env, info, 2, argv)) return make_failure(env, EINVAL, "udpRelayFaults");
  relay_t *r = get_relay(env, argv[0]);
  napi_typedarray_type type;
  size_t len;
  void *data;
  if (napi_get_typedarray_info(env, argv[1], &type, &len, &data, NULL, NULL) != napi_ok ||
      type != napi_float64_array || len % FAULT_REC != 0 || len / FAULT_REC > FAULT_MAX) return make_failure(env, EINVAL, "udpRelayFaults");
  if (!r) return make_failure(env, EBADF, "udpRelayFaults");
  const double *in = data;
  int n = (int)(len / FAULT_REC);
  for (int i = 0; i < n; i++) {
    const double *p = in + i * FAULT_REC;
    /* range before any cast: converting NaN or a huge double to int is undefined */
    if (!(p[0] >= 1 && p[0] <= FT_REORDER) || p[0] != (double)(int)p[0]) return make_failure(env, EINVAL, "udpRelayFaults");
    int ok = fault_known((int)p[0]) && (p[1] == 0 || p[1] == 1) && p[2] >= 0 && p[2] <= 1;
    if ((int)p[0] == FT_LATENCY) ok = ok && p[3] >= 0 && p[3] <= 3600000 && p[4] >= 0 && p[4] <= 3600000;
    else if ((int)p[0] == FT_REORDER) ok = ok && p[3] >= 0 && p[3] <= 1 && p[4] >= 0 && p[4] <= 3600000;
    else ok = ok && p[3] >= 0 && p[3] <= 1;
    if (!ok) return make_failure(env, EINVAL, "udpRelayFaults");
  }
  pthread_mutex_lock(&r->mu);
  /* A fault kept across the change (same id, FAULT_REC's last number) keeps each flow's roll;
   * new ones are rolled. A latency deadline of the old set no longer holds new datagrams back. */
  double old[FAULT_MAX][FAULT_REC];
  int old_n = r->nf, from[FAULT_MAX];
  memcpy(old, r->fp, sizeof old);
  for (int i = 0; i < n; i++) {
    from[i] = -1;
    for (int j = 0; j < old_n; j++) if (old[j][6] == in[i * FAULT_REC + 6]) { from[i] = j; break; }
  }
  memset(r->fp, 0, sizeof r->fp);
  memcpy(r->fp, in, len * sizeof(double));
  r->nf = n;
  uint64_t now = now_ns();
  for (int s = 0; s < r->cap; s++) {
    flow_t *f = &r->flows[s];
    if (f->fd < 0) continue;
    uint32_t was[2] = { f->fmask[0], f->fmask[1] };
    roll_flow(r, f);
    for (int i = 0; i < n; i++) {
      int j = from[i], dir = r->fp[i][1] != 0;
      if (j < 0) continue;
      f->fmask[dir] = (f->fmask[dir] & ~(1u << i)) | (((was[(int)(old[j][1] != 0)] >> j) & 1u) << i);
    }
    for (int d = 0; d < 2; d++) if (f->lastDue[d] > now) f->lastDue[d] = now;
  }
  pthread_mutex_unlock(&r->mu);
  return number(env, 0);
}

/* udpRelayClose(h) → 0: joins the thread, closes every backend socket (not the listening fd). */
static napi_value relay_close(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!get_args(env, info, 1, argv)) return make_failure(env, EINVAL, "udpRelayClose");
  relay_t *r = get_relay(env, argv[0]);
  if (r) relay_stop(r);
  return number(env, 0);
}

napi_status sgemu_udp_relay_init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    { "udpRelayOpen", NULL, relay_open, NULL, NULL, NULL, napi_enumerable, NULL },
    { "udpRelayAdd", NULL, relay_add, NULL, NULL, NULL, napi_enumerable, NULL },
    { "udpRelaySend", NULL, relay_send, NULL, NULL, NULL, napi_enumerable, NULL },
    { "udpRelayRemove", NULL, relay_remove, NULL, NULL, NULL, napi_enumerable, NULL },
    { "udpRelayStats", NULL, relay_stats, NULL, NULL, NULL, napi_enumerable, NULL },
    { "udpRelayInfo", NULL, relay_info, NULL, NULL, NULL, napi_enumerable, NULL },
    { "udpRelayFaults", NULL, relay_faults, NULL, NULL, NULL, napi_enumerable, NULL },
    { "udpRelayClose", NULL, relay_close, NULL, NULL, NULL, napi_enumerable, NULL },
  };
  return napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}
