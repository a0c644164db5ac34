/*
 * TCP relay of established flows: native threads (epoll) that accept on the listening sockets
 * they are handed, connect backends when JS says so, and move bytes with splice(2) through a pipe
 * per direction, as HAProxy does. See src/native/tcp-relay.ts and native-notes/splice-relay.md.
 *
 * Owns: the relay thread, accepted client fds, backend fds, the pipe pool, per-flow byte counters
 * (written into a Float64Array JS handed us: [slot*2] client->backend, [slot*2+1] backend->client).
 * Must not: decide anything. Policy, conntrack, accounting and logs stay in TypeScript: this file
 * reports ACCEPT (peer address) and waits for connect/reset; it never connects on its own.
 * Threads (relayInit's `threads`, 1..MAX_THREADS; `sgemu run --threads`): each worker has its own
 * epoll, eventfd, timerfd, fault timer heap, pipe pool, buffer and mutex, and owns the flows whose
 * slot ≡ its index (mod threads), so a flow id names its worker. Every worker waits on every
 * listening socket (EPOLLEXCLUSIVE when there are several: one wakes per connection) and the one
 * that accepts a connection owns it: no hand-off between threads. One thread (the default) is the
 * previous design exactly.
 *
 *   R.listeners   written by JS holding every worker's mutex (in index order), read by a worker
 *                 holding its own
 *   worker W[i]   its mutex guards its flows, heap, pool and counts; the worker holds it while it
 *                 handles a batch of epoll events, JS entry points for one flow hold its worker's
 *   R.qmu         the event queue to JS, the batch state and the auto-connect budget; taken last
 *                 (lock order: workers in index order, then R.qmu)
 * Nothing blocks while holding a mutex (all fds are O_NONBLOCK; napi_call_threadsafe_function is
 * called nonblocking).
 * Invariants:
 *   - a flow id is slot | generation << SLOT_BITS, so a stale id (a flow that ended while JS was
 *     still holding its id) never touches the slot's next flow: such calls return ENOENT.
 *   - events reach JS in the order they happened, in batches, through one threadsafe function.
 *   - a pipe is taken from the pool only while a direction has bytes in flight and given back
 *     empty, so an idle flow holds 2 fds (its sockets) and no pipe.
 *
 *   epoll data (u64):  TAG_WAKE | 0            the worker's eventfd that wakes it (stop, test pause)
 *                      TAG_LISTEN | lid        a listening socket (level triggered)
 *                      id << 1 | side          a flow's client (0) or backend (1) socket (edge triggered);
 *                                              id = slot | generation << SLOT_BITS, 32 bits
 *   A flow event is handled only while its slot still holds that id: an event epoll reported for
 *   a flow freed later in the same batch (its slot maybe reused by an accept in that batch, or by
 *   relayDrain between epoll_wait and the lock) is stale, never taken for the slot's next flow
 *   (issue 17: a stale EPOLLHUP failed the next flow with ECONNREFUSED). As in udp_relay.c.
 *
 *   events to JS: records [type, id, a, b, x, y] in the Float64Array JS handed to relayInit,
 *   with their count and an array of peer address strings
 *     EV_ACCEPT    id, lid, peerPort, family, connecting (one string per ACCEPT, in order;
 *                  connecting = 1: relayAutoConnect was on, the backend connect is in flight)
 *     EV_CONNECTED id
 *     EV_FAILED    id, errno                          (backend connect failed; client already reset)
 *     EV_FIN       id, side that sent the first FIN
 *     EV_CLOSED    id, reset(0/1), errno, bytesIn, bytesOut
 */
#define _GNU_SOURCE
#include <node_api.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>

#include "result.h"
#include "sockaddr.h"
#include "fault_chain.h"

#define SLOT_BITS 17
#define MAX_FLOWS (1u << SLOT_BITS)
#define SLOT_MASK (MAX_FLOWS - 1)
#define MAX_LISTENERS 4096
#define PIPE_SIZE (256 * 1024)
#define POOL_MAX 256
#define ACCEPT_BATCH 64
#define BUDGET_GROUPS 64      /* conntrack tables (daemons) in one process, for relayBudget */
#define TAG_WAKE (1ull << 62)
#define TAG_LISTEN (1ull << 61)
#define TAG_TIMER (1ull << 60)
#define MAX_THREADS 16        /* src/native/tcp-relay.ts RELAY_THREADS_MAX */
#define SMALL_BUF 16384
#ifndef EPOLLEXCLUSIVE
#define EPOLLEXCLUSIVE (1u << 28)   /* Linux 4.5; older headers */
#endif

enum { F_FREE = 0, F_ACCEPTED, F_CONNECTING, F_RELAY, F_BLACKHOLE };
enum { EV_ACCEPT = 1, EV_CONNECTED, EV_FAILED, EV_FIN, EV_CLOSED };
#define REC 6

struct dir { int pr, pw; size_t pending; uint8_t eof, shut, bulk; };
struct fx;
struct flow {
  uint32_t id;
  int cfd, bfd;
  uint8_t state, fin_seen;
  uint16_t lid;               /* the listener that accepted it (its faults apply) */
  uint32_t early;             /* client socket events seen while connecting (epoll flags) */
  struct dir d[2];            /* d[0]: client -> backend, d[1]: backend -> client */
  struct fx *fx;              /* faults (issue 18); NULL: the splice fast path */
};
struct target { struct sockaddr_storage to, from; socklen_t to_len, from_len; };
struct listener { int fd; int active; int autoconnect; int group; struct target t; int nfaults; struct fault faults[FAULT_MAX]; };
struct timer { int64_t due; uint32_t id; };
struct event { double v[REC]; char addr[INET6_ADDRSTRLEN]; };
struct queue { struct event *ev; size_t n, cap; };

/* One relay thread and what only it touches (under its mutex). */
struct worker {
  pthread_mutex_t mu;
  pthread_cond_t test_cv;
  pthread_t thread;
  int idx, started, stop, epfd, wakefd;
  uint32_t free_base, free_n;  /* its free slots: R.free_slots[free_base .. free_base + free_n) */
  int pool[POOL_MAX][2];
  int pool_n, pipes_out;
  double overflow;            /* accepted while every slot of this worker was taken: reset at once */
  /* Faults: flows with a fault state, their timers (a min-heap of due times, stale entries skipped
   * by id and due) behind one timerfd, and what JS reads in relayFaultStats. */
  int timerfd;
  int64_t timer_armed;
  struct timer *heap;
  size_t heap_n, heap_cap;
  struct chain_scratch scratch;
  double faulted_live, fault_flows[FT_REORDER + 1];
  /* Test hook (relayTestPause): the thread parks before its next epoll_wait while paused, so a
   * test can line events up in the ready list and have them handled as one batch. */
  int test_paused, test_parked;
  char buf[SMALL_BUF];        /* recv → send of short messages, and faulted reads */
};

static struct worker W[MAX_THREADS];   /* .bss, as R */

/* relayBusyPoll: µs a worker keeps polling epoll (timeout 0) after a turn before it sleeps; 0 =
 * never (the default). Under a request/response load the next segment mostly comes within tens of
 * µs, and a thread that slept pays the wake-up (an IPI, the idle exit: 10-20 µs here, twice per
 * round trip). The price is CPU: every turn is followed by up to this much polling. */
static int busy_poll_us;
#define BUSY_POLL_MAX_US 1000

static struct {
  pthread_mutex_t qmu;        /* the queue to JS and what goes with it (below) */
  int running, nthreads;
  napi_threadsafe_function tsfn;
  int tsfn_refd, call_pending;
  int urgent;                 /* a queued event JS must see now (see signal_js) */
  int64_t q_first_us;         /* when the oldest queued event was queued */
  napi_ref counters_ref, events_ref;
  double *counters;           /* 2 per slot */
  double *events;             /* REC per record, events_cap records: the batch handed to JS */
  size_t events_cap;
  struct flow *flows;
  uint32_t *free_slots;       /* per worker, a range (struct worker's free_base) */
  uint16_t *gen;
  struct listener listeners[MAX_LISTENERS];
  int listeners_active;
  struct queue q, spare;
  uint32_t flows_live;        /* all workers (atomic: JS reads it without their mutexes) */
  /* Auto-connect budget per group of listeners (one conntrack table): how many more accepts the
   * threads may connect before JS has booked them (-1: no limit), and how many auto-connected
   * accepts sit in the queue JS has not taken yet (relayBudget subtracts them). Under qmu. */
  int64_t budget[BUDGET_GROUPS], auto_queued[BUDGET_GROUPS];
} R;   /* zero-initialised: in .bss, not 1.1 MB of .data in the shipped binary (issue 13) */

/* The non-zero initial values, set when the addon is loaded. PTHREAD_MUTEX_INITIALIZER and
 * PTHREAD_COND_INITIALIZER are all zeros on glibc and musl; the init calls keep that explicit. */
__attribute__((constructor)) static void relay_state_init(void) {
  pthread_mutex_init(&R.qmu, NULL);
  R.nthreads = 1;
  for (int i = 0; i < MAX_THREADS; i++) {
    struct worker *w = &W[i];
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->test_cv, NULL);
    w->idx = i;
    w->epfd = w->wakefd = w->timerfd = -1;
    w->timer_armed = T_NEVER;
  }
  for (int g = 0; g < BUDGET_GROUPS; g++) R.budget[g] = -1;
}

/* The worker that owns a slot (and so the flow in it). */
static struct worker *wof_slot(uint32_t slot) { return &W[R.nthreads > 1 ? slot % (uint32_t)R.nthreads : 0]; }
static struct worker *wof(const struct flow *f) { return wof_slot(f->id & SLOT_MASK); }

/* Every worker's mutex, in index order (JS entry points that change listeners or all flows). */
static void lock_all(void) { for (int i = 0; i < R.nthreads; i++) pthread_mutex_lock(&W[i].mu); }
static void unlock_all(void) { for (int i = R.nthreads - 1; i >= 0; i--) pthread_mutex_unlock(&W[i].mu); }

/* The epoll tag of one socket of flow `id` (side 0 client, 1 backend). */
static uint64_t flow_tag(uint32_t id, int side) { return (uint64_t)id << 1 | (uint64_t)side; }

/* ---- helpers (the flow's worker's mutex held) ---- */

static int64_t now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Queues an event for JS (R.qmu held); addr: the peer of an EV_ACCEPT. 0, or -1 when out of
 * memory (the event is lost, the flow lives on). */
static int push_event_locked(int type, uint32_t id, double a, double b, double x, double y, const char *addr) {
  struct queue *q = &R.q;
  if (q->n == q->cap) {
    size_t cap = q->cap ? q->cap * 2 : 256;
    struct event *ev = realloc(q->ev, cap * sizeof(*ev));
    if (!ev) return -1;
    q->ev = ev;
    q->cap = cap;
  }
  if (q->n == 0) R.q_first_us = now_us();
  if (type == EV_FAILED) R.urgent = 1;   /* the backend is down: JS swaps the filter at once */
  struct event *e = &q->ev[q->n++];
  e->v[0] = type; e->v[1] = id; e->v[2] = a; e->v[3] = b; e->v[4] = x; e->v[5] = y;
  size_t al = addr ? strnlen(addr, sizeof(e->addr) - 1) : 0;
  if (al) memcpy(e->addr, addr, al);
  e->addr[al] = 0;
  return 0;
}

static int push_event(int type, uint32_t id, double a, double b, double x, double y) {
  pthread_mutex_lock(&R.qmu);
  int r = push_event_locked(type, id, a, b, x, y, NULL);
  pthread_mutex_unlock(&R.qmu);
  return r;
}

/*
 * Wakes the JS thread for the queued events. Events JS must act on at once (the accept of a flow
 * that waits for JS's connect-or-reset; a failed backend: JS swaps the filter) go at once; the
 * rest (accepts on an auto-connect listener, connected, FIN, closed: JS only books them) wait up
 * to BATCH_US or BATCH_N events, so under load one wake-up of the event loop carries many flows.
 * Each wake-up of the JS thread is a context switch each way, the largest cost per connection
 * after the relay's own syscalls: batching the auto-connect accepts and waiting 4 ms instead of 1
 * took the daemon from 125-137 to 99-119 µs of CPU per short connection (scripts/bench/tcp.ts,
 * conn/s). JS turns auto-connect off near a full conntrack table (ConnTable.nearFull), so the
 * overflow edge still sees every accept at once. The relay loop's epoll timeout enforces the
 * deadline.
 */
#define BATCH_US 4000
#define BATCH_N 128
/* Both with R.qmu held. */
static void signal_js_now(void) {
  if (R.q.n == 0 || R.call_pending || !R.tsfn) return;
  if (napi_call_threadsafe_function(R.tsfn, NULL, napi_tsfn_nonblocking) == napi_ok) { R.call_pending = 1; R.urgent = 0; }
}

static void signal_js(void) {
  if (R.q.n == 0 || R.call_pending) return;
  if (R.urgent || R.q.n >= BATCH_N || now_us() - R.q_first_us >= BATCH_US) signal_js_now();
}

static int pipe_get(struct worker *w, struct dir *d) {
  if (d->pr >= 0) return 0;
  if (w->pool_n > 0) {
    w->pool_n--;
    d->pr = w->pool[w->pool_n][0];
    d->pw = w->pool[w->pool_n][1];
  } else {
    int p[2];
    if (pipe2(p, O_NONBLOCK | O_CLOEXEC) != 0) return -1;
    (void)fcntl(p[1], F_SETPIPE_SZ, PIPE_SIZE);   /* best effort: default 64 KiB still works */
    d->pr = p[0];
    d->pw = p[1];
  }
  w->pipes_out++;
  return 0;
}

/* Gives an empty pipe back to the pool; a pipe still holding bytes is closed. */
static void pipe_put(struct worker *w, struct dir *d) {
  if (d->pr < 0) return;
  if (d->pending == 0 && w->pool_n < POOL_MAX) {
    w->pool[w->pool_n][0] = d->pr;
    w->pool[w->pool_n][1] = d->pw;
    w->pool_n++;
  } else {
    close(d->pr);
    close(d->pw);
  }
  w->pipes_out--;
  d->pr = d->pw = -1;
  d->pending = 0;
}

static void set_linger0(int fd) {
  struct linger l = { 1, 0 };
  (void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
}

static struct flow *flow_by_id(uint32_t id) {
  uint32_t slot = id & SLOT_MASK;
  if (!R.flows || slot >= MAX_FLOWS) return NULL;
  struct flow *f = &R.flows[slot];
  return f->state != F_FREE && f->id == id ? f : NULL;
}

static void fx_free(struct flow *f);

/* Closes both sockets (reset: SO_LINGER 0 first, so each peer gets an RST) and frees the slot. */
static void flow_free(struct flow *f, int reset) {
  uint32_t slot = f->id & SLOT_MASK;
  struct worker *w = wof(f);
  fx_free(f);
  for (int i = 0; i < 2; i++) pipe_put(w, &f->d[i]);
  if (f->cfd >= 0) { if (reset) set_linger0(f->cfd); close(f->cfd); }
  if (f->bfd >= 0) { if (reset) set_linger0(f->bfd); close(f->bfd); }
  f->cfd = f->bfd = -1;
  f->state = F_FREE;
  f->id = 0;
  R.gen[slot]++;
  R.free_slots[w->free_base + w->free_n++] = slot;
  __atomic_sub_fetch(&R.flows_live, 1, __ATOMIC_RELAXED);
}

static void flow_closed(struct flow *f, int reset, int err) {
  uint32_t slot = f->id & SLOT_MASK;
  push_event(EV_CLOSED, f->id, reset, err, R.counters[slot * 2], R.counters[slot * 2 + 1]);
  flow_free(f, reset);
}

static int sock_error(int fd) {
  int err = 0;
  socklen_t len = sizeof(err);
  if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) return errno;
  return err;
}

/*
 * Moves what is readable from src to dst until the kernel says EAGAIN (or, for a short recv, until
 * the receive queue is known empty). Two ways, per direction:
 *   small   recv into one thread buffer and send; whatever send does not take is written into the
 *           direction's pipe (empty, so it fits) and flushed with splice on EPOLLOUT. Short
 *           messages never touch a pipe: 2 syscalls per message, as a recv/send proxy.
 *   bulk    after a recv filled the whole buffer: splice src -> pipe -> dst, no copy to user space.
 * A read is only tried on an empty pipe, so EAGAIN from splice always means "src is empty" (never
 * "pipe full"), which keeps edge triggering exact. A recv shorter than asked drained the queue
 * (tcp_recvmsg copies all that is queued up to len), so newer bytes raise a new edge; unless a
 * FIN is already queued behind the bytes (EPOLLRDHUP or EPOLLHUP in the same event: drain = 1).
 * fin (EPOLLRDHUP was reported: the socket's RCV_SHUTDOWN, set when the peer's FIN was taken in
 * sequence, so every byte before it was in the receive queue already): a short recv stopped at
 * that FIN, and the EOF is taken as read without the recv that would return 0 (tcp(7) recv
 * semantics; one syscall less per direction, issue 16: the relay read each EOF twice).
 * Returns 0, or an errno (the caller resets the flow).
 */

static void saw_eof(struct flow *f, int side) {
  f->d[side].eof = 1;
  if (!f->fin_seen) { f->fin_seen = 1; push_event(EV_FIN, f->id, side, 0, 0, 0); }
}

static int pump(struct flow *f, int side, int drain, int fin) {
  struct worker *wk = wof(f);
  char *small_buf = wk->buf;
  struct dir *d = &f->d[side];
  int src = side == 0 ? f->cfd : f->bfd, dst = side == 0 ? f->bfd : f->cfd;
  double *ctr = &R.counters[(f->id & SLOT_MASK) * 2 + side];
  for (;;) {
    if (d->pending > 0) {
      ssize_t n = splice(d->pr, NULL, dst, NULL, d->pending, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
      if (n > 0) {
        d->pending -= (size_t)n;
        if (side == 1) *ctr += (double)n;
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) return 0;   /* dst full: EPOLLOUT on dst resumes */
      return n < 0 ? errno : EPIPE;
    }
    if (d->eof) {
      pipe_put(wk, d);
      /* FIN forwarded as FIN. When the other way is shut already the flow is over and settle()
       * closes both sockets; all their input was read, so close sends that FIN itself. */
      if (!d->shut) { d->shut = 1; if (!f->d[1 - side].shut) (void)shutdown(dst, SHUT_WR); }
      return 0;
    }
    ssize_t n;
    if (!d->bulk) {
      n = recv(src, small_buf, SMALL_BUF, 0);
      if (n > 0) {
        if (side == 0) *ctr += (double)n;
        ssize_t w = send(dst, small_buf, (size_t)n, MSG_NOSIGNAL);
        if (w < 0) {
          if (errno != EAGAIN && errno != EINTR) return errno;
          w = 0;
        }
        if (side == 1) *ctr += (double)w;
        if (w < n) {
          if (pipe_get(wk, d) != 0) return errno;
          ssize_t p = write(d->pw, small_buf + w, (size_t)(n - w));
          if (p != n - w) return p < 0 ? errno : EIO;
          d->pending = (size_t)p;
        }
        if (n == SMALL_BUF) d->bulk = 1;        /* a full buffer: bulk transfer, splice from now on */
        else if (d->pending == 0 && fin) saw_eof(f, side);   /* the FIN is what is left (see above) */
        else if (d->pending == 0 && !drain) return 0;   /* queue drained (and no FIN seen queued) */
        continue;
      }
    } else {
      if (pipe_get(wk, d) != 0) return errno;
      n = splice(src, NULL, d->pw, NULL, PIPE_SIZE, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
      if (n > 0) {
        d->pending = (size_t)n;
        if (side == 0) *ctr += (double)n;
        continue;
      }
    }
    if (n == 0) { saw_eof(f, side); continue; }
    if (errno == EINTR) continue;
    if (errno == EAGAIN) { pipe_put(wk, d); return 0; }
    return errno;
  }
}

static void settle(struct flow *f, int err) {
  if (err) { flow_closed(f, 1, err); return; }   /* an RST (or error) on one side: RST the other */
  if (f->d[0].shut && f->d[1].shut) flow_closed(f, 0, 0);
}

/* ---- faults (issue 18; fault_chain.h has the semantics, native-notes/faults.md the design) ----
 * A flow whose listener has faults gets a struct fx: what it reads goes through the fault chain of
 * its direction into a queue of segments, each written when due; the flow's next due time sits in
 * a min-heap behind one timerfd. A flow without faults never allocates one and keeps pump(). */

#define FX_BUF_MAX (1 << 20)   /* bytes queued per direction before its source is no longer read */
#define FX_CLOSE (-1)          /* fx_service: the chain closes the connection (FIN both ways) */
/* Segments one fx_service call writes before it yields the thread: a slicer of 1-byte slices
 * turns each 16 KiB read into 16k sends, and while the destination takes them (a backend that
 * does not read still buffers megabytes) the loop never met EAGAIN: one flow held the relay
 * thread for seconds, and the other flows' accepts, connects and bytes waited. Past the budget
 * the rest is served from the timer heap, after the events already reported. */
#define FX_SEND_BUDGET 64
enum { SEG_DATA = 0, SEG_EOF, SEG_CLOSE };
struct seg { struct seg *next; int64_t due; uint32_t len, off; uint8_t kind; char data[]; };
struct fxdir {
  struct seg *head, *tail;
  size_t queued;
  uint8_t paused;             /* queue full: the source is not read until it drains to half */
  uint8_t blocked;            /* the destination's buffer is full: EPOLLOUT resumes, not a timer */
  uint8_t close_queued;
  struct chain_state cs;
};
struct fx {
  int n;
  uint32_t mask;              /* the faults this flow got (toxicity rolled per flow) */
  int64_t due;                /* its entry in the heap (T_NEVER: none) */
  struct fault f[FAULT_MAX];
  struct fxdir d[2];
};

static void heap_push(struct worker *w, int64_t due, uint32_t id) {
  if (w->heap_n == w->heap_cap) {
    size_t cap = w->heap_cap ? w->heap_cap * 2 : 256;
    struct timer *h = realloc(w->heap, cap * sizeof(*h));
    if (!h) return;           /* out of memory: the flow's timer is lost; its next event re-arms */
    w->heap = h;
    w->heap_cap = cap;
  }
  size_t i = w->heap_n++;
  while (i > 0) {
    size_t up = (i - 1) / 2;
    if (w->heap[up].due <= due) break;
    w->heap[i] = w->heap[up];
    i = up;
  }
  w->heap[i] = (struct timer){ due, id };
}

static struct timer heap_pop(struct worker *w) {
  struct timer top = w->heap[0], x = w->heap[--w->heap_n];
  size_t i = 0;
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= w->heap_n) break;
    if (c + 1 < w->heap_n && w->heap[c + 1].due < w->heap[c].due) c++;
    if (w->heap[c].due >= x.due) break;
    w->heap[i] = w->heap[c];
    i = c;
  }
  if (w->heap_n > 0) w->heap[i] = x;
  return top;
}

/* The timerfd follows the heap's earliest entry (absolute, CLOCK_MONOTONIC, µs precision). */
static void timer_arm(struct worker *w) {
  int64_t due = w->heap_n ? w->heap[0].due : T_NEVER;
  if (due == w->timer_armed || w->timerfd < 0) return;
  struct itimerspec its = { 0 };
  if (due != T_NEVER) {
    if (due <= 0) due = 1;
    its.it_value.tv_sec = due / 1000000;
    its.it_value.tv_nsec = (due % 1000000) * 1000;
  }
  if (timerfd_settime(w->timerfd, TFD_TIMER_ABSTIME, &its, NULL) == 0) w->timer_armed = due;
}

static void fx_free(struct flow *f) {
  struct fx *x = f->fx;
  if (!x) return;
  for (int s = 0; s < 2; s++) {
    for (struct seg *g = x->d[s].head, *nx; g; g = nx) { nx = g->next; free(g); }
  }
  free(x);
  f->fx = NULL;
  wof(f)->faulted_live--;
}

static int seg_push(struct fxdir *xd, int kind, const char *data, uint32_t len, int64_t due) {
  struct seg *g = malloc(sizeof(*g) + len);
  if (!g) return ENOMEM;
  g->next = NULL; g->due = due; g->len = len; g->off = 0; g->kind = (uint8_t)kind;
  if (len) memcpy(g->data, data, len);
  if (xd->tail) xd->tail->next = g; else xd->head = g;
  xd->tail = g;
  xd->queued += len + sizeof(*g);   /* what it costs, not only its bytes: tiny slices are not free */
  return 0;
}

/* Gives flow f the fault set (n = 0: none). Faults it had already (same id) keep their roll and
 * state; new ones are rolled. In a direction whose chain changed, what is queued leaves now (as
 * Toxiproxy lets an interrupted toxic's data go); the other direction is left alone. 0 or ENOMEM. */
static int fx_set(struct flow *f, const struct fault *faults, int n) {
  struct fx *x = f->fx;
  struct worker *w = wof(f);
  int64_t now = now_us();
  if (!x) {
    if (n == 0) return 0;
    struct chain_scratch *sc = &w->scratch;
    if (!sc->a) {
      int cap = SMALL_BUF + 64;
      sc->a = malloc((size_t)cap * sizeof(struct piece));
      sc->b = malloc((size_t)cap * sizeof(struct piece));
      sc->cap = cap;
      if (!sc->a || !sc->b) { free(sc->a); free(sc->b); sc->a = sc->b = NULL; return ENOMEM; }
    }
    x = calloc(1, sizeof(*x));
    if (!x) return ENOMEM;
    x->due = T_NEVER;
    for (int s = 0; s < 2; s++) {
      struct chain_state *cs = &x->d[s].cs;
      cs->timeout_at = cs->reset_at = cs->close_at = T_NEVER;
      /* A relaying flow may have stopped reading a side whose splice pipe was full (the edge is
       * spent): the first fx_service reads it once the pipe has drained. */
      if (f->state == F_RELAY) x->d[s].paused = 1;
    }
    f->fx = x;
    w->faulted_live++;
  }
  int changed[2];
  struct chain_state cs[2] = { x->d[0].cs, x->d[1].cs };
  x->mask = chain_change(x->f, x->n, x->mask, faults, n, cs, now, changed, w->fault_flows);
  memcpy(x->f, faults, (size_t)n * sizeof(*faults));
  x->n = n;
  for (int s = 0; s < 2; s++) {
    x->d[s].cs = cs[s];
    if (!changed[s]) continue;
    for (struct seg *g = x->d[s].head; g; g = g->next) if (g->due > now) g->due = now;
  }
  return 0;
}

/* A read chunk (or the EOF) through the chain into the direction's queue. */
static int fx_chunk(struct flow *f, int side, const char *buf, uint32_t len, int eof) {
  struct fx *x = f->fx;
  struct fxdir *xd = &x->d[side];
  struct piece *p;
  int np = chain_run(x->f, x->n, x->mask, side, &xd->cs, &wof(f)->scratch, len, eof, now_us(), &p);
  for (int k = 0; k < np; k++) {
    int err = p[k].eof ? seg_push(xd, SEG_EOF, NULL, 0, p[k].t) : p[k].len ? seg_push(xd, SEG_DATA, buf + p[k].off, p[k].len, p[k].t) : 0;
    if (err) return err;
  }
  if (xd->cs.dropping && !xd->close_queued) {
    int64_t due = xd->cs.close_at;
    if (xd->tail && xd->tail->due > due) due = xd->tail->due;
    xd->close_queued = 1;
    return seg_push(xd, SEG_CLOSE, NULL, 0, due);
  }
  return 0;
}

/* Reads what side's source has (until EAGAIN, the EOF, or a full queue) into the chain. */
static int fx_read(struct flow *f, int side) {
  char *small_buf = wof(f)->buf;
  struct dir *d = &f->d[side];
  struct fxdir *xd = &f->fx->d[side];
  int src = side == 0 ? f->cfd : f->bfd;
  double *ctr = &R.counters[(f->id & SLOT_MASK) * 2 + side];
  for (;;) {
    if (d->eof) return 0;
    if (xd->queued >= FX_BUF_MAX) { xd->paused = 1; return 0; }
    ssize_t n = recv(src, small_buf, SMALL_BUF, 0);
    if (n > 0) {
      if (side == 0) *ctr += (double)n;
      int err = fx_chunk(f, side, small_buf, (uint32_t)n, 0);
      if (err) return err;
      continue;
    }
    if (n == 0) {
      saw_eof(f, side);
      return fx_chunk(f, side, NULL, 0, 1);
    }
    if (errno == EINTR) continue;
    return errno == EAGAIN ? 0 : errno;
  }
}

/* Writes side's due segments towards its destination; reads again once a paused queue drained.
 * 0, an errno, or FX_CLOSE. */
static int fx_service(struct flow *f, int side) {
  struct dir *d = &f->d[side];
  struct fxdir *xd = &f->fx->d[side];
  int dst = side == 0 ? f->bfd : f->cfd;
  double *ctr = &R.counters[(f->id & SLOT_MASK) * 2 + side];
  /* bytes the splice path left in the pipe (faults added to a live flow) go first */
  while (d->pending > 0) {
    ssize_t n = splice(d->pr, NULL, dst, NULL, d->pending, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    if (n > 0) { d->pending -= (size_t)n; if (side == 1) *ctr += (double)n; continue; }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) { xd->blocked = 1; return 0; }
    return n < 0 ? errno : EPIPE;
  }
  pipe_put(wof(f), d);
  int budget = FX_SEND_BUDGET;
  for (;;) {
    int64_t now = now_us();
    while (xd->head && xd->head->due <= now) {
      struct seg *g = xd->head;
      if (g->kind == SEG_DATA) {
        if (budget-- == 0) return 0;              /* the rest is due: fx_finish re-queues the flow */
        ssize_t w = send(dst, g->data + g->off, g->len - g->off, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && errno == EAGAIN) { xd->blocked = 1; return 0; }
        if (w < 0) return errno;
        if (side == 1) *ctr += (double)w;
        g->off += (uint32_t)w;
        xd->queued -= (size_t)w;
        if (g->off < g->len) { xd->blocked = 1; return 0; }   /* buffer full: EPOLLOUT resumes */
      } else if (g->kind == SEG_EOF) {
        if (!d->shut) { d->shut = 1; if (!f->d[1 - side].shut) (void)shutdown(dst, SHUT_WR); }
      } else {
        return FX_CLOSE;
      }
      xd->head = g->next;
      if (!xd->head) xd->tail = NULL;
      xd->queued -= sizeof(*g);
      free(g);
    }
    if (!xd->paused || xd->queued >= FX_BUF_MAX / 2) return 0;
    xd->paused = 0;
    int err = fx_read(f, side);
    if (err) return err;
    if (!xd->head || xd->head->due > now_us()) return 0;
  }
}

/* After handling a faulted flow: ends it (err, a close or reset decided by the chain, both ways
 * shut), or re-arms its timer; a flow whose faults are gone and whose queues are empty goes back
 * to the splice fast path. */
static void fx_finish(struct flow *f, int err) {
  struct fx *x = f->fx;
  if (err == FX_CLOSE) { flow_closed(f, 0, 0); return; }
  if (err) { flow_closed(f, 1, err); return; }
  if (f->d[0].shut && f->d[1].shut) { flow_closed(f, 0, 0); return; }
  int64_t due = T_NEVER;
  int idle = x->mask == 0;
  for (int s = 0; s < 2; s++) {
    struct fxdir *xd = &x->d[s];
    if (xd->head && !xd->blocked && xd->head->due < due) due = xd->head->due;
    if (xd->cs.timeout_at < due) due = xd->cs.timeout_at;
    if (xd->cs.reset_at < due) due = xd->cs.reset_at;
    if (xd->head || xd->paused || xd->cs.dropping || xd->cs.timeout_at != T_NEVER || xd->cs.reset_at != T_NEVER) idle = 0;
  }
  if (idle) { fx_free(f); return; }
  /* A head already due was left by FX_SEND_BUDGET: served from the heap at the next turn (not in
   * this one: fx_timers pops only what was due when it started, so a flow cannot loop there). */
  int64_t now = now_us();
  if (due < now) due = now;
  /* Only an earlier time needs a new heap entry: a later one is found when the earlier entry
   * fires (fx_tick recomputes). Each input restarting a long timeout would otherwise push one. */
  if (due < x->due) {
    x->due = due;
    heap_push(wof(f), due, f->id);
  }
}

/* A faulted flow's timer: a reset or close the chain decided, or segments that are due. */
static void fx_tick(struct flow *f) {
  struct fx *x = f->fx;
  int64_t now = now_us();
  x->due = T_NEVER;
  for (int s = 0; s < 2; s++) if (x->d[s].cs.reset_at <= now) { flow_closed(f, 1, 0); return; }
  for (int s = 0; s < 2; s++) if (x->d[s].cs.timeout_at <= now) { flow_closed(f, 0, 0); return; }
  int err = 0;
  if (f->state == F_RELAY) for (int s = 0; s < 2 && !err; s++) err = fx_service(f, s);
  fx_finish(f, err);
}

static void fx_timers(struct worker *w) {
  int64_t now = now_us();
  while (w->heap_n && w->heap[0].due <= now) {
    struct timer t = heap_pop(w);
    struct flow *f = flow_by_id(t.id);
    if (f && f->fx && f->fx->due == t.due) fx_tick(f);
  }
}

/* Reads side into the chain and writes what is due both ways. */
static int fx_io(struct flow *f, int side, uint32_t events) {
  int err = 0;
  if (events & EPOLLOUT) f->fx->d[1 - side].blocked = 0;
  if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP)) err = fx_read(f, side);
  for (int s = 0; s < 2 && !err; s++) err = fx_service(f, s);
  return err;
}

/* Edge-triggered event on one socket of a flow: read from it if readable, flush towards it if it
 * became writable with bytes waiting, nothing else (no speculative syscalls). */
static void on_flow_event(uint64_t tag, uint32_t events) {
  struct flow *f = flow_by_id((uint32_t)(tag >> 1));
  if (!f) return;             /* stale: the flow ended after epoll_wait reported it */
  int side = (int)(tag & 1);
  if (f->state == F_RELAY && f->fx) {
    int err = (events & EPOLLERR) ? sock_error(side == 0 ? f->cfd : f->bfd) : 0;
    if (!err) err = fx_io(f, side, events);
    if (f->fx) fx_finish(f, err); else settle(f, err);
  } else if (f->state == F_RELAY) {
    int err = 0;
    if (events & EPOLLERR) err = sock_error(side == 0 ? f->cfd : f->bfd);
    if (!err && (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP))) err = pump(f, side, (events & (EPOLLRDHUP | EPOLLHUP)) != 0, (events & EPOLLRDHUP) != 0);
    if (!err && (events & EPOLLOUT) && f->d[1 - side].pending > 0) err = pump(f, 1 - side, 1, 0);
    settle(f, err);
  } else if (f->state == F_CONNECTING && side == 0) {
    f->early |= events;       /* bytes or FIN from the client before the backend answered */
  } else if (f->state == F_CONNECTING && side == 1) {
    int err = (events & (EPOLLERR | EPOLLHUP)) ? sock_error(f->bfd) : 0;
    if (!err && !(events & EPOLLOUT)) return;
    if (err == 0 && (events & EPOLLHUP)) err = ECONNREFUSED;
    if (err) {
      push_event(EV_FAILED, f->id, err, 0, 0, 0);
      flow_free(f, 1);        /* the client was accepted already: the closest answer is an RST */
      return;
    }
    f->state = F_RELAY;
    push_event(EV_CONNECTED, f->id, 0, 0, 0, 0);
    /* Only what epoll reported (EPOLL_CTL_ADD reports the state at registration too): no
     * speculative reads. A side with a FIN queued is read to the end. */
    uint32_t ce = f->early;
    if (f->fx) {
      err = fx_io(f, 0, ce & (EPOLLIN | EPOLLRDHUP | EPOLLHUP));
      if (!err) err = fx_io(f, 1, events & (EPOLLIN | EPOLLRDHUP));
      if (f->fx) fx_finish(f, err); else settle(f, err);
      return;
    }
    if (ce & (EPOLLIN | EPOLLRDHUP | EPOLLHUP)) err = pump(f, 0, (ce & (EPOLLRDHUP | EPOLLHUP)) != 0, (ce & EPOLLRDHUP) != 0);
    if (!err && (events & (EPOLLIN | EPOLLRDHUP))) err = pump(f, 1, (events & EPOLLRDHUP) != 0, (events & EPOLLRDHUP) != 0);
    settle(f, err);
  } else if (f->state == F_BLACKHOLE) {
    if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) flow_closed(f, 0, 0);
  }
}

/* Fills a target from numeric text (local "" = no bind); 0 on success. */
static int make_target(const char *host, int port, const char *local, struct target *t) {
  t->to_len = make_addr(strchr(host, ':') ? 6 : 4, host, port, &t->to);
  t->from_len = 0;
  if (t->to_len == 0) return -1;
  if (local[0] && (t->from_len = make_addr(strchr(local, ':') ? 6 : 4, local, 0, &t->from)) == 0) return -1;
  return 0;
}

/* socket, TCP_NODELAY, [bind], non-blocking connect → fd in *out, or an errno. */
static int dial(const struct target *t, int *out) {
  int one = 1, err = 0;
  int fd = socket(t->to.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  *out = fd;
  if (fd < 0) return errno;
  (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  /* port chosen at connect, per 4-tuple: many short flows from one address need no more ports */
  if (t->from_len > 0 && t->from.ss_family == AF_INET) (void)setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
  if (t->from_len > 0 && bind(fd, (const struct sockaddr *)&t->from, t->from_len) != 0) err = errno;
  else if (connect(fd, (const struct sockaddr *)&t->to, t->to_len) != 0 && errno != EINPROGRESS) err = errno;
  return err;
}

/* Both sockets of a connecting flow into epoll (edge triggered); 0 or an errno. */
static int watch_flow(struct flow *f) {
  struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET };
  ev.data.u64 = flow_tag(f->id, 0);
  int epfd = wof(f)->epfd;
  if (epoll_ctl(epfd, EPOLL_CTL_ADD, f->cfd, &ev) != 0) return errno;
  ev.data.u64 = flow_tag(f->id, 1);
  if (epoll_ctl(epfd, EPOLL_CTL_ADD, f->bfd, &ev) != 0) return errno;
  return 0;
}

/* Dotted quad into out (≥ 16 bytes): inet_ntop goes through sprintf, once per accept. */
static void fmt_ipv4(uint32_t a, char *out) {
  for (int i = 3; i >= 0; i--) {
    unsigned v = (a >> (i * 8)) & 255;
    if (v >= 100) *out++ = (char)('0' + v / 100);
    if (v >= 10) *out++ = (char)('0' + v / 10 % 10);
    *out++ = (char)('0' + v % 10);
    if (i) *out++ = '.';
  }
  *out = 0;
}

/* Accepts what waits on listener lid (w's mutex held): the flows are w's. */
static void on_accept(struct worker *w, int lid) {
  struct listener *l = &R.listeners[lid];
  for (int i = 0; i < ACCEPT_BATCH && l->active; i++) {
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    int fd = accept4(l->fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      return;                 /* EAGAIN, or EMFILE & co: level triggered, we come back */
    }
    if (w->free_n == 0) { set_linger0(fd); close(fd); w->overflow++; continue; }
    uint32_t slot = R.free_slots[w->free_base + --w->free_n];
    struct flow *f = &R.flows[slot];
    f->id = slot | ((uint32_t)R.gen[slot] << SLOT_BITS);
    if (f->id == 0) { R.gen[slot]++; f->id = slot | ((uint32_t)R.gen[slot] << SLOT_BITS); }
    f->cfd = fd;
    f->bfd = -1;
    f->state = F_ACCEPTED;
    f->fin_seen = 0;
    f->early = 0;
    f->lid = (uint16_t)lid;
    f->fx = NULL;
    if (l->nfaults > 0) (void)fx_set(f, l->faults, l->nfaults);   /* ENOMEM: the flow goes unfaulted */
    for (int s = 0; s < 2; s++) { f->d[s].pr = f->d[s].pw = -1; f->d[s].pending = 0; f->d[s].eof = f->d[s].shut = f->d[s].bulk = 0; }
    R.counters[slot * 2] = 0;
    R.counters[slot * 2 + 1] = 0;
    __atomic_add_fetch(&R.flows_live, 1, __ATOMIC_RELAXED);
    int port, family;
    char addr[INET6_ADDRSTRLEN];
    if (ss.ss_family == AF_INET) {
      struct sockaddr_in *a = (struct sockaddr_in *)&ss;
      port = ntohs(a->sin_port); family = 4;
      fmt_ipv4(ntohl(a->sin_addr.s_addr), addr);
    } else {
      struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
      port = ntohs(a->sin6_port); family = 6;
      inet_ntop(AF_INET6, &a->sin6_addr, addr, sizeof(addr));
    }
    /* JS answers it: at once. An auto-connected flow needs no answer (JS books it in conntrack
     * and may still reset it): it waits for the batch like the events below. Past the group's
     * budget (its conntrack table would be full once JS books what is queued) the accept goes to
     * JS unconnected, which parks it: the client times out, as at a full kernel table (issue 17
     * item 5: the flows over the limit used to be dialled here and then reset). The budget is
     * taken with the accept queued, under R.qmu: deliver() hands both to JS together. */
    pthread_mutex_lock(&R.qmu);
    int autoc = l->autoconnect && R.budget[l->group] != 0;
    int lost = push_event_locked(EV_ACCEPT, f->id, lid, port, family, autoc, addr) != 0;
    if (!lost && !autoc) R.urgent = 1;
    if (!lost && autoc) {
      if (R.budget[l->group] > 0) R.budget[l->group]--;
      R.auto_queued[l->group]++;
    }
    pthread_mutex_unlock(&R.qmu);
    if (lost) { flow_free(f, 1); continue; }
    if (autoc) {
      /* The listener's kernel filter is exact and its policy admits every SYN it passes: connect
       * now, without waiting for JS (which still opens the conntrack entry and may reset). */
      f->state = F_CONNECTING;
      int err = dial(&l->t, &f->bfd);
      if (!err) err = watch_flow(f);
      if (err) { push_event(EV_FAILED, f->id, err, 0, 0, 0); flow_free(f, 1); }
    }
  }
}

static void *relay_main(void *arg) {
  struct worker *w = arg;
  struct epoll_event evs[256];
  for (;;) {
    int timeout = -1;
    pthread_mutex_lock(&w->mu);
    while (w->test_paused && !w->stop) {
      w->test_parked = 1;
      pthread_cond_broadcast(&w->test_cv);
      pthread_cond_wait(&w->test_cv, &w->mu);
    }
    w->test_parked = 0;
    pthread_mutex_unlock(&w->mu);
    pthread_mutex_lock(&R.qmu);
    if (R.q.n > 0 && !R.call_pending) {
      int64_t left = BATCH_US - (now_us() - R.q_first_us);
      timeout = left <= 0 ? 0 : (int)((left + 999) / 1000);
    }
    pthread_mutex_unlock(&R.qmu);
    int n, spin = __atomic_load_n(&busy_poll_us, __ATOMIC_RELAXED);
    if (spin > 0 && timeout != 0) {
      int64_t until = now_us() + spin;
      do n = epoll_wait(w->epfd, evs, 256, 0); while (n == 0 && now_us() < until);
      if (n == 0) n = epoll_wait(w->epfd, evs, 256, timeout);
    } else {
      n = epoll_wait(w->epfd, evs, 256, timeout);
    }
    pthread_mutex_lock(&w->mu);
    if (w->stop) { pthread_mutex_unlock(&w->mu); break; }
    for (int i = 0; i < n; i++) {
      uint64_t tag = evs[i].data.u64;
      if (tag & TAG_WAKE) { uint64_t v; (void)!read(w->wakefd, &v, sizeof(v)); continue; }
      if (tag & TAG_TIMER) { uint64_t v; (void)!read(w->timerfd, &v, sizeof(v)); continue; }
      if (tag & TAG_LISTEN) { int lid = (int)(tag & 0xffff); if (R.listeners[lid].active) on_accept(w, lid); continue; }
      on_flow_event(tag, evs[i].events);
    }
    if (w->heap_n) { fx_timers(w); timer_arm(w); }
    pthread_mutex_unlock(&w->mu);
    pthread_mutex_lock(&R.qmu);
    signal_js();
    pthread_mutex_unlock(&R.qmu);
  }
  return NULL;
}

/* ---- JS side ---- */

static void update_ref(napi_env env);

static int in_dispatch;        /* JS thread only: a batch is being handed to JS right now */

/* Takes the queued events (R.qmu taken here; the workers fill the spare buffer meanwhile).
 * from_tsfn: called by the threadsafe function (which clears call_pending); a drain leaves a
 * queued call pending (it will find the queue empty or newer) so no second one is queued. */
static struct queue take_queue(int from_tsfn) {
  pthread_mutex_lock(&R.qmu);
  struct queue q = R.q;
  memset(R.auto_queued, 0, sizeof(R.auto_queued));   /* JS books these now: relayBudget counts them */
  R.q = R.spare;
  R.q.n = 0;
  R.spare = (struct queue){ 0 };
  if (from_tsfn) R.call_pending = 0;
  R.urgent = 0;
  pthread_mutex_unlock(&R.qmu);
  return q;
}

/* Hands the events taken to cb, in order (JS thread). */
static void hand_events(napi_env env, napi_value cb, struct queue q) {
  in_dispatch = 1;
  /* records go into the Float64Array JS handed to relayInit (no allocation per batch), in
   * chunks of its capacity; one array of peer address strings per chunk */
  for (size_t off = 0; off < q.n && R.events; ) {
    size_t n = q.n - off < R.events_cap ? q.n - off : R.events_cap;
    napi_value strs, argv[2], undef;
    uint32_t ns = 0;
    if (napi_create_array(env, &strs) != napi_ok || napi_get_undefined(env, &undef) != napi_ok ||
        napi_create_uint32(env, (uint32_t)n, &argv[0]) != napi_ok) break;
    for (size_t i = 0; i < n; i++) {
      const struct event *ev = &q.ev[off + i];
      memcpy(R.events + i * REC, ev->v, sizeof(ev->v));
      if (ev->v[0] == EV_ACCEPT) {
        napi_value str;
        if (napi_create_string_latin1(env, ev->addr, NAPI_AUTO_LENGTH, &str) == napi_ok) napi_set_element(env, strs, ns, str);
        ns++;
      }
    }
    argv[1] = strs;
    napi_call_function(env, undef, cb, 2, argv, NULL);   /* the JS side catches its own errors */
    off += n;
  }
  if (R.tsfn) update_ref(env);
  pthread_mutex_lock(&R.qmu);
  q.n = 0;
  if (R.spare.ev == NULL) R.spare = q;
  else free(q.ev);
  signal_js_now();            /* events queued while JS ran: the workers may sleep without a deadline */
  pthread_mutex_unlock(&R.qmu);
  in_dispatch = 0;
}

static void call_js(napi_env env, napi_value cb, void *context, void *data) {
  (void)context; (void)data;
  if (env == NULL || cb == NULL) return;
  hand_events(env, cb, take_queue(1));
}

/*
 * relayDrain(onEvents) → whether it delivered: accepts the connections waiting in every listener's
 * backlog (their handshake is done: they exist), then hands the events queued so far to onEvents
 * now, synchronously, instead of at the next batch. JS calls it before a policy swap (so every
 * connection the old filter let through is booked under the old policy, as AWS treats
 * connections that exist when a rule changes) and before listing conntrack (so the view is
 * exact). Not while a batch is being delivered (a handler that drained would see later events
 * before earlier ones). With every worker's mutex held, so an accept another worker made is
 * queued (a worker accepts and queues under its mutex) before the queue is taken; what the drain
 * accepts itself becomes worker 0's.
 */
static napi_value relay_drain(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], out;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1) return type_error(env, "relayDrain(onEvents)");
  int ok = R.running && !in_dispatch;
  if (ok) {
    lock_all();
    for (int lid = 0; lid < MAX_LISTENERS; lid++) if (R.listeners[lid].active) on_accept(&W[0], lid);
    struct queue q = take_queue(0);
    unlock_all();
    hand_events(env, argv[0], q);
  }
  napi_get_boolean(env, ok, &out);
  return out;
}

#define num make_number   /* result.h: shared by the addon's files */

/* Closes a worker's epoll, eventfd and timerfd (not running). */
static void worker_close(struct worker *w) {
  if (w->epfd >= 0) close(w->epfd);
  if (w->wakefd >= 0) close(w->wakefd);
  if (w->timerfd >= 0) close(w->timerfd);
  w->epfd = w->wakefd = w->timerfd = -1;
  w->timer_armed = T_NEVER;
  w->heap_n = 0;
}

/* Stops the started workers and waits for them. */
static void workers_join(void) {
  for (int i = 0; i < R.nthreads; i++) {
    struct worker *w = &W[i];
    if (!w->started) continue;
    pthread_mutex_lock(&w->mu);
    w->stop = 1;
    w->test_paused = 0;
    pthread_cond_broadcast(&w->test_cv);
    uint64_t one = 1;
    (void)!write(w->wakefd, &one, sizeof(one));
    pthread_mutex_unlock(&w->mu);
  }
  for (int i = 0; i < R.nthreads; i++) {
    struct worker *w = &W[i];
    if (!w->started) continue;
    pthread_join(w->thread, NULL);
    w->started = 0;
    w->stop = 0;
  }
}

/* Stops the threads and closes every fd we own. Called by relayStop and at env teardown (JS
 * thread: nothing else starts or stops the relay meanwhile). */
static void stop_all(int release) {
  if (!R.running) return;
  workers_join();
  lock_all();
  for (uint32_t i = 0; i < MAX_FLOWS; i++) if (R.flows[i].state != F_FREE) flow_free(&R.flows[i], 0);
  for (int i = 0; i < MAX_LISTENERS; i++) if (R.listeners[i].active) { close(R.listeners[i].fd); R.listeners[i].active = 0; }
  R.listeners_active = 0;
  for (int k = 0; k < R.nthreads; k++) {
    struct worker *w = &W[k];
    for (int i = 0; i < w->pool_n; i++) { close(w->pool[i][0]); close(w->pool[i][1]); }
    w->pool_n = 0;
    worker_close(w);
  }
  R.running = 0;
  pthread_mutex_lock(&R.qmu);
  R.q.n = 0;
  napi_threadsafe_function tsfn = R.tsfn;
  R.tsfn = NULL;
  R.call_pending = 0;
  pthread_mutex_unlock(&R.qmu);
  unlock_all();
  /* at env teardown Node finalizes threadsafe functions itself */
  if (tsfn && release) napi_release_threadsafe_function(tsfn, napi_tsfn_abort);
}

static void cleanup_hook(void *arg) { (void)arg; stop_all(0); }

/* A worker's epoll with its eventfd and timerfd in it; 0 or an errno (*sys: the call). */
static int worker_open(struct worker *w, const char **sys) {
  if ((w->epfd = epoll_create1(EPOLL_CLOEXEC)) < 0) { *sys = "epoll_create1"; return errno; }
  if ((w->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0) { *sys = "eventfd"; return errno; }
  struct epoll_event ev = { .events = EPOLLIN, .data.u64 = TAG_WAKE };
  if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->wakefd, &ev) != 0) { *sys = "epoll_ctl"; return errno; }
  if ((w->timerfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC)) < 0) { *sys = "timerfd_create"; return errno; }
  ev.data.u64 = TAG_TIMER;
  if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->timerfd, &ev) != 0) { *sys = "epoll_ctl"; return errno; }
  w->timer_armed = T_NEVER;
  return 0;
}

/*
 * relayInit(onEvents(count, string[]), counters: Float64Array(2 * MAX_FLOWS), events: Float64Array(6 * n),
 * threads = 1) → MAX_FLOWS. threads (1..MAX_THREADS) is taken when the relay starts; a relay
 * already running keeps its own.
 */
static napi_value relay_init(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4], name;
  napi_typedarray_type tt, et;
  size_t len, elen;
  void *data, *edata;
  uint32_t threads = 1;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 3) return type_error(env, "sgemu_native: relayInit(onEvents, counters, events, threads)");
  if (napi_get_typedarray_info(env, argv[1], &tt, &len, &data, NULL, NULL) != napi_ok ||
      tt != napi_float64_array || len < 2 * MAX_FLOWS)
    return type_error(env, "sgemu_native: relayInit counters must be a Float64Array of 2 * relayMaxFlows");
  if (napi_get_typedarray_info(env, argv[2], &et, &elen, &edata, NULL, NULL) != napi_ok ||
      et != napi_float64_array || elen < REC)
    return type_error(env, "sgemu_native: relayInit events must be a Float64Array of 6 * records");
  if (argc >= 4) {
    napi_valuetype vt;
    CHECK(napi_typeof(env, argv[3], &vt));
    if (vt != napi_undefined && (get_u32(env, argv[3], &threads) != 0 || threads < 1 || threads > MAX_THREADS))
      return type_error(env, "sgemu_native: relayInit threads must be 1..16");
  }
  if (R.running) return num(env, MAX_FLOWS);
  if (!R.flows) {
    R.flows = calloc(MAX_FLOWS, sizeof(*R.flows));
    R.free_slots = calloc(MAX_FLOWS, sizeof(*R.free_slots));
    R.gen = calloc(MAX_FLOWS, sizeof(*R.gen));
    if (!R.flows || !R.free_slots || !R.gen) return make_failure(env, ENOMEM, "calloc");
    for (uint32_t i = 0; i < MAX_FLOWS; i++) R.gen[i] = 1;
    napi_add_env_cleanup_hook(env, cleanup_hook, NULL);
  }
  /* Every slot is free here (stop_all freed them): worker k gets the slots ≡ k (mod threads),
   * highest first in its range of free_slots, so it hands out its lowest slot first. */
  R.nthreads = (int)threads;
  uint32_t per = (MAX_FLOWS + threads - 1) / threads;
  for (uint32_t k = 0; k < threads; k++) {
    struct worker *w = &W[k];
    w->free_base = k * per;
    w->free_n = 0;
    uint32_t top = k + ((MAX_FLOWS - 1 - k) / threads) * threads;
    for (int64_t slot = top; slot >= (int64_t)k; slot -= threads) R.free_slots[w->free_base + w->free_n++] = (uint32_t)slot;
  }
  if (R.counters_ref) napi_delete_reference(env, R.counters_ref);
  CHECK(napi_create_reference(env, argv[1], 1, &R.counters_ref));
  R.counters = data;
  if (R.events_ref) napi_delete_reference(env, R.events_ref);
  CHECK(napi_create_reference(env, argv[2], 1, &R.events_ref));
  R.events = edata;
  R.events_cap = elen / REC;
  /* Every failure from here closes what was opened (issue 17: a failed threadsafe function
   * leaked the epoll fd and the eventfd) and reports { errno, syscall }. */
  int err = 0;
  const char *sys = NULL;
  for (int k = 0; k < R.nthreads && !err; k++) err = worker_open(&W[k], &sys);
  if (!err && (napi_create_string_utf8(env, "sgemu-tcp-relay", NAPI_AUTO_LENGTH, &name) != napi_ok ||
               napi_create_threadsafe_function(env, argv[0], NULL, name, 0, 1, NULL, NULL, NULL, call_js, &R.tsfn) != napi_ok)) {
    err = EINVAL; sys = "napi_create_threadsafe_function";   /* onEvents is not a function */
    R.tsfn = NULL;
  }
  if (!err && napi_unref_threadsafe_function(env, R.tsfn) != napi_ok) { err = EINVAL; sys = "napi_unref_threadsafe_function"; }
  if (!err) {
    R.tsfn_refd = 0;
    R.running = 1;
    /* The threads start with every signal blocked, as udp_relay.c's: signals stay with Node's
     * own threads (a SIGINT or SIGCHLD delivered here would find no handler of ours). */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    for (int k = 0; k < R.nthreads && !err; k++) {
      int rc = pthread_create(&W[k].thread, NULL, relay_main, &W[k]);
      if (rc != 0) { err = rc; sys = "pthread_create"; }
      else {
        W[k].started = 1;
        /* shows in top -H, perf, /proc: sgemu-tcp-relay, then sgemu-tcp-rel1 … rel15 */
        char tname[16];
        if (k == 0) snprintf(tname, sizeof(tname), "sgemu-tcp-relay");
        else snprintf(tname, sizeof(tname), "sgemu-tcp-rel%d", k & 15);
        (void)pthread_setname_np(W[k].thread, tname);
      }
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (err) { workers_join(); R.running = 0; }
  }
  if (err) {
    for (int k = 0; k < MAX_THREADS; k++) worker_close(&W[k]);
    if (R.tsfn) napi_release_threadsafe_function(R.tsfn, napi_tsfn_abort);
    R.tsfn = NULL;
    return make_failure(env, err, sys);
  }
  return num(env, MAX_FLOWS);
}

static void update_ref(napi_env env) {
  if (!R.tsfn) return;
  int want = R.listeners_active > 0 || __atomic_load_n(&R.flows_live, __ATOMIC_RELAXED) > 0;
  if (want && !R.tsfn_refd) { napi_ref_threadsafe_function(env, R.tsfn); R.tsfn_refd = 1; }
  else if (!want && R.tsfn_refd) { napi_unref_threadsafe_function(env, R.tsfn); R.tsfn_refd = 0; }
}

/* relayListen(fd, group = 0) → lid. The thread accepts on fd from now on (the fd stays a listener
 * whose socket filter attachFilter can still swap); group: its conntrack table, for relayBudget. */
static napi_value relay_listen(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  uint32_t fd, group = 0;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 1 || get_u32(env, argv[0], &fd) != 0 || (argc >= 2 && (get_u32(env, argv[1], &group) != 0 || group >= BUDGET_GROUPS)))
    return type_error(env, "sgemu_native: relayListen(fd, group 0..63)");
  lock_all();
  /* round robin, so a listener id is not reused while accepts of its last owner may still be
   * queued for JS (the wrapper resets those: the id has no listener) */
  static int next_lid = 0;
  int lid = -1;
  for (int i = 0; i < MAX_LISTENERS; i++) {
    int c = (next_lid + i) % MAX_LISTENERS;
    if (!R.listeners[c].active) { lid = c; next_lid = (c + 1) % MAX_LISTENERS; break; }
  }
  napi_value out;
  if (!R.running) out = make_failure(env, ENOTCONN, "relayListen");
  else if (lid < 0) out = make_failure(env, ENFILE, "relayListen");
  else {
    /* Every worker waits on the listener; with several, EPOLLEXCLUSIVE wakes one of those
     * waiting per connection (epoll_ctl(2)), not all of them for one accept4 to win. */
    struct epoll_event ev = { .events = EPOLLIN | (R.nthreads > 1 ? EPOLLEXCLUSIVE : 0), .data.u64 = TAG_LISTEN | (uint64_t)lid };
    int one = 1, k = 0, ok = 0;
    /* accepted sockets inherit TCP_NODELAY from the listener: one setsockopt per listener, not per flow */
    if (setsockopt((int)fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) != 0) out = make_failure(env, errno, "setsockopt");
    else {
      for (; k < R.nthreads; k++) if (epoll_ctl(W[k].epfd, EPOLL_CTL_ADD, (int)fd, &ev) != 0) break;
      ok = k == R.nthreads;
      if (!ok) {
        out = make_failure(env, errno, "epoll_ctl");
        while (k-- > 0) epoll_ctl(W[k].epfd, EPOLL_CTL_DEL, (int)fd, NULL);
      }
    }
    if (ok) {
      R.listeners[lid].fd = (int)fd;
      R.listeners[lid].active = 1;
      R.listeners[lid].autoconnect = 0;
      R.listeners[lid].nfaults = 0;
      R.listeners[lid].group = (int)group;
      R.listeners_active++;
      update_ref(env);
      out = num(env, lid);
    }
  }
  unlock_all();
  return out;
}

/* relayUnlisten(lid): stops accepting and closes the listening fd. */
static napi_value relay_unlisten(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  uint32_t lid;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 1 || get_u32(env, argv[0], &lid) != 0 || lid >= MAX_LISTENERS) return type_error(env, "sgemu_native: relayUnlisten(lid)");
  lock_all();
  napi_value out;
  if (!R.listeners[lid].active) out = make_failure(env, ENOENT, "relayUnlisten");
  else {
    for (int k = 0; k < R.nthreads; k++) epoll_ctl(W[k].epfd, EPOLL_CTL_DEL, R.listeners[lid].fd, NULL);
    close(R.listeners[lid].fd);
    R.listeners[lid].active = 0;
    R.listeners_active--;
    update_ref(env);
    out = num(env, 0);
  }
  unlock_all();
  return out;
}


/*
 * relayConnect(id, host, port, localHost) → 0: non-blocking connect to the backend (bound first
 * to localHost when it is not ""), then relaying once connected. The outcome arrives as
 * EV_CONNECTED or EV_FAILED; a failure before the connect is in flight also arrives as EV_FAILED.
 */
static napi_value relay_connect(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  uint32_t id, port;
  char host[64], local[64];
  size_t hl, ll;
  struct target t;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 4 || get_u32(env, argv[0], &id) != 0 || get_u32(env, argv[2], &port) != 0 || port > 65535 ||
      napi_get_value_string_utf8(env, argv[1], host, sizeof(host), &hl) != napi_ok ||
      napi_get_value_string_utf8(env, argv[3], local, sizeof(local), &ll) != napi_ok)
    return type_error(env, "sgemu_native: relayConnect(id, host, port, localHost)");
  if (make_target(host, (int)port, local, &t) != 0) return make_failure(env, EINVAL, "inet_pton");
  /* dial runs outside the lock (a loopback connect does the whole handshake in this call): the
   * thread never touches an F_CONNECTING flow before its fds are in epoll. */
  struct worker *w = wof_slot(id & SLOT_MASK);
  pthread_mutex_lock(&w->mu);
  struct flow *f = flow_by_id(id);
  int ok = f && f->state == F_ACCEPTED;
  if (ok) f->state = F_CONNECTING;
  pthread_mutex_unlock(&w->mu);
  if (!ok) return make_failure(env, ENOENT, "relayConnect");
  int fd;
  int err = dial(&t, &fd);
  pthread_mutex_lock(&w->mu);
  f->bfd = fd;
  if (!err) err = watch_flow(f);
  if (err) {
    push_event(EV_FAILED, f->id, err, 0, 0, 0);
    flow_free(f, 1);
  }
  pthread_mutex_unlock(&w->mu);
  if (err) {
    pthread_mutex_lock(&R.qmu);
    signal_js_now();
    pthread_mutex_unlock(&R.qmu);
  }
  update_ref(env);
  return num(env, 0);
}

/*
 * relayAutoConnect(lid, on, host, port, localHost) → 0: while on, the thread connects each
 * accepted flow of this listener to host:port at once (EV_ACCEPT then carries 1 in its last
 * field) instead of waiting for relayConnect. JS turns it on only while the listener's kernel
 * filter is exact and in RULES mode, so every SYN that gets through is one the policy admits.
 */
static napi_value relay_auto_connect(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  uint32_t lid, port;
  bool on;
  char host[64], local[64];
  size_t hl, ll;
  struct target t;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 5 || get_u32(env, argv[0], &lid) != 0 || lid >= MAX_LISTENERS || napi_get_value_bool(env, argv[1], &on) != napi_ok ||
      napi_get_value_string_utf8(env, argv[2], host, sizeof(host), &hl) != napi_ok || get_u32(env, argv[3], &port) != 0 ||
      port > 65535 || napi_get_value_string_utf8(env, argv[4], local, sizeof(local), &ll) != napi_ok)
    return type_error(env, "sgemu_native: relayAutoConnect(lid, on, host, port, localHost)");
  if (on && make_target(host, (int)port, local, &t) != 0) return make_failure(env, EINVAL, "inet_pton");
  lock_all();
  napi_value out;
  if (!R.listeners[lid].active) out = make_failure(env, ENOENT, "relayAutoConnect");
  else {
    if (on) R.listeners[lid].t = t;
    R.listeners[lid].autoconnect = on;
    out = num(env, 0);
  }
  unlock_all();
  return out;
}

enum { OP_RESET = 0, OP_CLOSE, OP_BLACKHOLE };

/* relayOp(id, op): reset (RST both), close (FIN both), blackhole (stop relaying, keep both
 * sockets open and unread; both close when either peer goes: EV_CLOSED then) → 0, or 1 when a
 * flow not yet relaying was reset instead. No event for reset/close: JS finishes the flow
 * itself. ENOENT for a flow that already ended. */
static napi_value relay_op(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  uint32_t id, op;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 2 || get_u32(env, argv[0], &id) != 0 || get_u32(env, argv[1], &op) != 0 || op > OP_BLACKHOLE)
    return type_error(env, "sgemu_native: relayOp(id, 0 reset | 1 close | 2 blackhole)");
  struct worker *w = wof_slot(id & SLOT_MASK);
  pthread_mutex_lock(&w->mu);
  struct flow *f = flow_by_id(id);
  napi_value out;
  if (!f) out = make_failure(env, ENOENT, "relayOp");
  else {
    int r = 0;
    if (op == OP_BLACKHOLE && f->state == F_RELAY) {
      f->state = F_BLACKHOLE;
      for (int i = 0; i < 2; i++) pipe_put(w, &f->d[i]);   /* bytes in flight are dropped with the pipe */
      fx_free(f);                                        /* and with the fault queues */
    } else {
      r = op == OP_BLACKHOLE;   /* not relaying yet: nothing to keep open, reset instead (returns 1) */
      flow_free(f, op != OP_CLOSE);
    }
    out = num(env, r);
  }
  pthread_mutex_unlock(&w->mu);
  update_ref(env);
  return out;
}

/* relayStats() → [live flows, pipes in use, pipes pooled, accepts reset for want of a slot,
 * listeners, threads] (all workers) */
static napi_value relay_stats(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value arr;
  CHECK(napi_create_array_with_length(env, 6, &arr));
  double v[6] = { __atomic_load_n(&R.flows_live, __ATOMIC_RELAXED), 0, 0, 0, R.listeners_active, R.nthreads };
  for (int k = 0; k < R.nthreads; k++) {
    pthread_mutex_lock(&W[k].mu);
    v[1] += W[k].pipes_out; v[2] += W[k].pool_n; v[3] += W[k].overflow;
    pthread_mutex_unlock(&W[k].mu);
  }
  for (uint32_t i = 0; i < 6; i++) CHECK(napi_set_element(env, arr, i, num(env, v[i])));
  return arr;
}

/*
 * relayTestPause(on) → 0. Test hook, refused (EPERM) unless SGEMU_TEST_HOOKS=1 is set: with on,
 * returns once every worker is parked before its next epoll_wait (events meanwhile queue up in
 * the epoll ready lists, in the order they happen); off lets them go on, and each one's next
 * epoll_wait returns them as one batch. The deterministic way to have a flow freed, its slot reused and its stale
 * event handled within one batch (test/native/tcp-relay.test.ts).
 */
static napi_value relay_test_pause(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  bool on;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 1 || napi_get_value_bool(env, argv[0], &on) != napi_ok) return type_error(env, "sgemu_native: relayTestPause(on)");
  const char *hooks = getenv("SGEMU_TEST_HOOKS");
  if (!hooks || strcmp(hooks, "1") != 0) return make_failure(env, EPERM, "relayTestPause");
  if (!R.running) return make_failure(env, ENOTCONN, "relayTestPause");
  for (int k = 0; k < R.nthreads; k++) {
    struct worker *w = &W[k];
    pthread_mutex_lock(&w->mu);
    w->test_paused = on;
    if (on) {
      uint64_t one = 1;
      (void)!write(w->wakefd, &one, sizeof(one));     /* out of epoll_wait, to the parking spot */
      while (!w->test_parked && !w->stop) pthread_cond_wait(&w->test_cv, &w->mu);
    } else {
      pthread_cond_broadcast(&w->test_cv);
    }
    pthread_mutex_unlock(&w->mu);
  }
  return num(env, 0);
}

/*
 * relayFaults(lid, faults: Float64Array) → 0: the listener's faults from now on (FAULT_REC doubles
 * each, src/native/fault-codes.ts; empty: none). New flows roll their toxicity at accept; live
 * flows of the listener get the new set at once (rolled again, their queued data let go), as
 * Toxiproxy applies a toxic change to existing connections.
 */
static napi_value relay_faults(napi_env env, napi_callback_info info) {
  size_t argc = 2, len;
  napi_value argv[2];
  uint32_t lid;
  napi_typedarray_type tt;
  void *data;
  struct fault faults[FAULT_MAX];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 2 || get_u32(env, argv[0], &lid) != 0 || lid >= MAX_LISTENERS ||
      napi_get_typedarray_info(env, argv[1], &tt, &len, &data, NULL, NULL) != napi_ok || tt != napi_float64_array)
    return type_error(env, "sgemu_native: relayFaults(lid, Float64Array)");
  int n = chain_parse(data, len, faults);
  if (n < 0) return make_failure(env, EINVAL, "relayFaults");
  lock_all();
  napi_value out;
  if (!R.listeners[lid].active) out = make_failure(env, ENOENT, "relayFaults");
  else {
    struct listener *l = &R.listeners[lid];
    memcpy(l->faults, faults, (size_t)n * sizeof(*faults));
    l->nfaults = n;
    for (uint32_t i = 0; R.flows && i < MAX_FLOWS; i++) {
      struct flow *f = &R.flows[i];
      if (f->state == F_FREE || f->state == F_BLACKHOLE || f->lid != lid || (!f->fx && n == 0)) continue;
      if (fx_set(f, faults, n) != 0 || !f->fx) continue;
      if (f->state != F_RELAY) continue;
      int err = 0;
      for (int s = 0; s < 2 && !err; s++) err = fx_service(f, s);
      fx_finish(f, err);
    }
    for (int k = 0; k < R.nthreads; k++) timer_arm(&W[k]);
    pthread_mutex_lock(&R.qmu);
    signal_js_now();
    pthread_mutex_unlock(&R.qmu);
    out = num(env, 0);
  }
  unlock_all();
  return out;
}

/*
 * relayBudget(group, n) → 0: the listeners of `group` may auto-connect n more accepts (the room
 * left in their conntrack table after what JS has booked; -1: no limit). Accepts auto-connected
 * but not yet handed to JS are taken off. JS calls it after each event batch it handled.
 */
static napi_value relay_budget(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  uint32_t group;
  int64_t n;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 2 || get_u32(env, argv[0], &group) != 0 || group >= BUDGET_GROUPS || napi_get_value_int64(env, argv[1], &n) != napi_ok)
    return type_error(env, "sgemu_native: relayBudget(group 0..63, n)");
  pthread_mutex_lock(&R.qmu);
  R.budget[group] = n < 0 ? -1 : (n > R.auto_queued[group] ? n - R.auto_queued[group] : 0);
  pthread_mutex_unlock(&R.qmu);
  return num(env, 0);
}

/* relayFlowFaults(id) → the bit mask of the listener's faults this flow got (0: none; ENOENT: gone). */
static napi_value relay_flow_faults(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  uint32_t id;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 1 || get_u32(env, argv[0], &id) != 0) return type_error(env, "sgemu_native: relayFlowFaults(id)");
  struct worker *w = wof_slot(id & SLOT_MASK);
  pthread_mutex_lock(&w->mu);
  struct flow *f = flow_by_id(id);
  napi_value out = !f ? make_failure(env, ENOENT, "relayFlowFaults") : num(env, f->fx ? f->fx->mask : 0);
  pthread_mutex_unlock(&w->mu);
  return out;
}

/* relayFaultStats() → [flows with a fault state now, then per fault code 1..10: flows given it] */
static napi_value relay_fault_stats(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value arr;
  double v[FT_REORDER + 1] = { 0 };
  for (int k = 0; k < R.nthreads; k++) {
    pthread_mutex_lock(&W[k].mu);
    v[0] += W[k].faulted_live;
    for (int i = 1; i <= FT_REORDER; i++) v[i] += W[k].fault_flows[i];
    pthread_mutex_unlock(&W[k].mu);
  }
  CHECK(napi_create_array_with_length(env, FT_REORDER + 1, &arr));
  for (uint32_t i = 0; i <= FT_REORDER; i++) CHECK(napi_set_element(env, arr, i, num(env, v[i])));
  return arr;
}

/* relayBusyPoll(us) → 0: how long each worker polls before sleeping (0..BUSY_POLL_MAX_US; 0 off).
 * Takes effect at the workers' next turn, running or not. */
static napi_value relay_busy_poll(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  uint32_t us;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 1 || get_u32(env, argv[0], &us) != 0 || us > BUSY_POLL_MAX_US)
    return type_error(env, "sgemu_native: relayBusyPoll(us), us 0..1000");
  __atomic_store_n(&busy_poll_us, (int)us, __ATOMIC_RELAXED);
  return make_number(env, 0);
}

static napi_value relay_stop(napi_env env, napi_callback_info info) {
  (void)info;
  stop_all(1);
  return num(env, 0);
}

napi_status sgemu_tcp_relay_init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    { "relayInit", NULL, relay_init, NULL, NULL, NULL, napi_enumerable, NULL },
    { "relayListen", NULL, relay_listen, NULL, NULL, NULL, napi_enumerable, NULL },
    { "relayUnlisten", NULL, relay_unlisten, NULL, NULL, NULL, napi_enumerable, NULL },
    { "relayConnect", NULL, relay_connect, NULL, NULL, NULL, napi_enumerable, NULL },
    { "relayAutoConnect", NULL, relay_auto_connect, NULL, NULL, NULL, napi_enumerable, NULL },
    { "relayOp", NULL, relay_op, NULL, NULL, NULL, napi_enumerable, NULL },
    { "relayStats", NULL, relay_stats, NULL, NULL, NULL, napi_enumerable, NULL },
    { "relayBusyPoll", NULL, relay_busy_poll, NULL, NULL, NULL, napi_enumerable, NULL },
    { "relayDrain", NULL, relay_drain, NULL, NULL, NULL, napi_enumerable, NULL },
    { "relayStop", NULL, relay_stop, NULL, NULL, NULL, napi_enumerable, NULL },
    { "relayTestPause", NULL, relay_test_pause, NULL, NULL, NULL, napi_enumerable, NULL },
    { "relayFaults", NULL, relay_faults, NULL, NULL, NULL, napi_enumerable, NULL },
    { "relayBudget", NULL, relay_budget, NULL, NULL, NULL, napi_enumerable, NULL },
    { "relayFlowFaults", NULL, relay_flow_faults, NULL, NULL, NULL, napi_enumerable, NULL },
    { "relayFaultStats", NULL, relay_fault_stats, NULL, NULL, NULL, napi_enumerable, NULL },
  };
  return napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props);
}
